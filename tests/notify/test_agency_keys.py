"""create_agency and agency API keys: shown once, stored only as SHA-256."""

import hashlib
import re
from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from chatserver.core.errors import Unauthenticated
from notify.agency_services import agency_create, api_key_authenticate, api_key_issue
from notify.models import Agency, AgencyApiKey

pytestmark = pytest.mark.django_db

KEY_RE = re.compile(r"^sk_([A-Za-z0-9]{8})_([A-Za-z0-9_-]{32,})$")


def create_agency(name: str) -> tuple[int, str]:
    out = StringIO()
    call_command("create_agency", name, stdout=out, stderr=StringIO())
    lines = dict(line.split("=", 1) for line in out.getvalue().split())
    return int(lines["agency_id"]), lines["api_key"]


def test_create_agency_prints_id_and_a_key_stored_only_as_its_hash():
    agency_id, key = create_agency("Улсын бүртгэлийн ерөнхий газар")
    match = KEY_RE.match(key)
    assert match, key
    agency = Agency.objects.get(pk=agency_id)
    assert agency.name == "Улсын бүртгэлийн ерөнхий газар"
    api_key = AgencyApiKey.objects.get(agency=agency)
    assert api_key.prefix == match.group(1)
    assert api_key.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert api_key_authenticate(key=key) == agency


def test_plain_key_is_stored_nowhere():
    _, key = create_agency("Demo")
    secret = KEY_RE.match(key).group(2)  # type: ignore[union-attr]
    for model in apps.get_models():
        for row in model._default_manager.values_list():
            for value in row:
                assert secret not in str(value), f"{model.__name__} holds the plain key"


def test_create_agency_duplicate_name():
    create_agency("Demo")
    with pytest.raises(CommandError, match="already exists"):
        create_agency("Demo")
    assert Agency.objects.count() == 1


def test_create_agency_blank_name():
    with pytest.raises(CommandError):
        create_agency("   ")


def test_api_key_authenticate_refuses_wrong_revoked_and_expired_keys():
    agency, key = agency_create(name="Demo")
    prefix = KEY_RE.match(key).group(1)  # type: ignore[union-attr]
    for wrong in ["", "sk_", f"sk_{prefix}_wrong-secret", key + "x", key.replace("sk_", "pk_")]:
        with pytest.raises(Unauthenticated):
            api_key_authenticate(key=wrong)

    second = api_key_issue(agency=agency)
    assert second != key
    AgencyApiKey.objects.filter(prefix=prefix).update(revoked_at=timezone.now())
    with pytest.raises(Unauthenticated):
        api_key_authenticate(key=key)
    assert api_key_authenticate(key=second) == agency  # other keys keep working

    AgencyApiKey.objects.filter(agency=agency).update(expires_at=timezone.now())
    with pytest.raises(Unauthenticated):
        api_key_authenticate(key=second)
