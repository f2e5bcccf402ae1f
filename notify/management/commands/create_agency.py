"""manage.py create_agency NAME: prints `agency_id=<id>` and `api_key=<key>` lines."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chatserver.errors import AppError
from notify.agency_services import agency_create


class Command(BaseCommand):
    help = "Create an agency and print its id and API key (the key is shown only once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            agency, key = agency_create(name=options["name"])
        except AppError as exc:
            raise CommandError(exc.message) from exc
        self.stderr.write(f"agency {agency.name!r} created; keep the key, it is not stored")
        self.stdout.write(f"agency_id={agency.pk}")
        self.stdout.write(f"api_key={key}")
