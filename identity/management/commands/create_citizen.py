"""manage.py create_citizen REGISTER --phone +976XXXXXXXX [--name NAME] [--force]"""

import logging
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from chatserver.core.errors import AppError
from identity.admin_services import phone_bind_verified
from identity.services import citizen_create

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = ("Create a citizen with a verified phone number. Demo mode only (SONOR_DEMO=1), "
            "unless --force: the number is bound without a code.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("register_number", help="e.g. УБ99011512")
        parser.add_argument("--phone", required=True, help="a mobile number, e.g. +97699112233")
        parser.add_argument("--name", default="", help="display name")
        parser.add_argument("--force", action="store_true",
                            help="allow outside demo mode (the use is logged)")

    def handle(self, *args: Any, **options: Any) -> None:
        register, phone = options["register_number"], options["phone"]
        if not settings.SONOR_DEMO:
            if not options["force"]:
                raise CommandError("create_citizen binds a phone number without verifying it: "
                                   "only in demo mode (SONOR_DEMO=1), or with --force.")
            log.warning("create_citizen --force outside demo mode: binding %s to %s "
                        "without verification", phone, register)
        try:
            with transaction.atomic():
                user = citizen_create(register_number=register, name=options["name"])
                bound = phone_bind_verified(user=user, phone=phone)
        except AppError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"citizen {user.register_number} (id {user.pk}): "
                          f"{bound.e164} verified")
