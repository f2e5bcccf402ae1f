"""manage.py create_agency NAME [--categories a,b] [--broadcast-all]: prints `agency_id=<id>`
and `api_key=<key>` lines."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chatserver.core.errors import AppError
from notify.agency_services import agency_categories_parse, agency_create
from notify.models import AGENCY_DEFAULT_CATEGORIES


class Command(BaseCommand):
    help = "Create an agency and print its id and API key (the key is shown only once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument(
            "--categories", default=None,
            help=f"comma-separated categories the agency may send (default: "
                 f"{','.join(AGENCY_DEFAULT_CATEGORIES)}; security only when named here)")
        parser.add_argument("--broadcast-all", action="store_true",
                            help="may broadcast to every citizen (default: to lists only)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            agency, key = agency_create(
                name=options["name"],
                categories=agency_categories_parse(options["categories"]),
                broadcast_all=options["broadcast_all"])
        except AppError as exc:
            raise CommandError(exc.message) from exc
        self.stderr.write(f"agency {agency.name!r} created (may send: "
                          f"{', '.join(agency.categories)}; broadcast to "
                          f"{'all or lists' if agency.broadcast_all else 'lists only'}); "
                          "keep the key, it is not stored")
        self.stdout.write(f"agency_id={agency.pk}")
        self.stdout.write(f"api_key={key}")
