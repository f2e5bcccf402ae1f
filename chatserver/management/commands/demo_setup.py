"""manage.py demo_setup [--base-url URL]: demo citizens, a demo agency and how to log in.

Idempotent: re-runs keep the same citizens, agency and API key (saved, 0600, in
SONOR_DATA_DIR/demo-agency-key) and print fresh one-time login links.
"""

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from chatserver.core.errors import AppError, Unauthenticated
from identity.admin_services import phone_bind_verified
from identity.login.demo import demo_login_link_create
from identity.models import User
from identity.services import citizen_create
from notify.agency_services import agency_create, api_key_authenticate, api_key_issue
from notify.models import Agency

DEMO_CITIZENS = [
    # register number, name, phone
    ("УБ99011512", "Бат-Эрдэнэ", "+97699112233"),
    ("УБ05211522", "Сарнай", "+97688112233"),
]
DEMO_AGENCY_NAME = "Demo agency"
DEMO_AGENCY_KEY_FILE = "demo-agency-key"


def _key_file_write(path: Path, key: str) -> None:
    """Replace the key file atomically; it is created 0600 (never world-readable)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _demo_agency() -> tuple[Agency, str]:
    path = Path(settings.DATA_DIR) / DEMO_AGENCY_KEY_FILE
    saved = path.read_text().strip() if path.exists() else ""
    if saved:
        try:
            agency = api_key_authenticate(key=saved)
        except Unauthenticated:  # e.g. a new database beside an old data directory
            pass
        else:
            if agency.name == DEMO_AGENCY_NAME:
                return agency, saved
    existing = Agency.objects.filter(name=DEMO_AGENCY_NAME).first()
    if existing is None:
        agency, key = agency_create(name=DEMO_AGENCY_NAME)
    else:
        agency, key = existing, api_key_issue(agency=existing)
    _key_file_write(path, key)
    return agency, key


class Command(BaseCommand):
    help = "Create the demo citizens and agency (demo mode only) and print how to log in."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--base-url", default="http://127.0.0.1:8000",
                            help="where the demo server is reached (scripts/demo passes it)")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.SONOR_DEMO:
            raise CommandError("demo_setup runs only in demo mode (SONOR_DEMO=1).")
        base_url = options["base_url"].rstrip("/")
        try:
            with transaction.atomic():
                citizens: list[tuple[User, str]] = []
                for register, name, phone in DEMO_CITIZENS:
                    user = citizen_create(register_number=register, name=name)
                    citizens.append((user, phone_bind_verified(user=user, phone=phone).e164))
                agency, key = _demo_agency()
                links = [demo_login_link_create(user=user) for user, _ in citizens]
        except AppError as exc:
            raise CommandError(exc.message) from exc
        self._print(base_url=base_url, citizens=citizens, links=links, agency=agency, key=key)

    def _print(self, *, base_url: str, citizens: list[tuple[User, str]], links: list[str],
               agency: Agency, key: str) -> None:
        out = self.stdout.write
        out("")
        out(self.style.SUCCESS("Sonor demo is ready."))
        out("")
        out("Log in as a demo citizen (each link works once; run demo_setup again for new ones):")
        for (user, phone), token in zip(citizens, links, strict=True):
            out(f"  {user.name}  {user.register_number}  {phone}")
            out(f"    {base_url}/demo/login/{token}")
        out("  A bearer token for API or socket clients: "
            f"python manage.py issue_token {citizens[0][0].register_number}")
        out("")
        out(f"Demo agency: id {agency.pk}, API key {key}")
        body = json.dumps({
            "register_number": citizens[0][0].register_number,
            "category": "service_request",
            "title": "Таны лавлагаа бэлэн боллоо",
            "body": "Оршин суугаа хаягийн лавлагааг e-mongolia.mn-ээс татаж авна уу.",
        }, ensure_ascii=False)
        out(f"Send {citizens[0][0].name} a notification "
            "(change the Idempotency-Key to send another):")
        out(f"  curl -sS -X POST {base_url}/api/agency/v1/notifications \\\n"
            f"    -H 'Authorization: Bearer {key}' \\\n"
            "    -H 'Content-Type: application/json' \\\n"
            "    -H 'Idempotency-Key: demo-1' \\\n"
            f"    -d '{body}'")
        out("")
        out("What the demo senders sent (SMS codes, push, email):")
        out(f"  {base_url}/demo/outbox")
        out("")
