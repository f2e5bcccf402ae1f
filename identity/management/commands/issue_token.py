"""manage.py issue_token REGISTER [--device NAME]: prints only the token, for scripts."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chatserver.core.errors import AppError
from identity.domain import register_parse
from identity.models import User
from identity.services import session_create


class Command(BaseCommand):
    help = "Print a new session (bearer) token for a citizen."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("register_number")
        parser.add_argument("--device", default="cli", help="device name shown in sessions")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            register = register_parse(options["register_number"])
            user = User.objects.filter(register_number=register.value).first()
            if user is None:
                raise CommandError(f"No citizen with register number {register.value}.")
            session, token = session_create(user=user, login_method="cli",
                                            device_name=options["device"])
        except AppError as exc:
            raise CommandError(exc.message) from exc
        self.stderr.write(f"session {session.pk} for {user.register_number}")
        self.stdout.write(token)
