"""Operator commands: create_citizen, issue_token, demo_setup and the demo login links."""

import logging
import re
import stat
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from chatserver.core.errors import DemoOnly, Unauthenticated
from identity.login.demo import demo_login_consume, demo_login_link_create
from identity.models import DemoLoginLink, PhoneNumber, User
from identity.services import session_authenticate, token_hash
from notify.models import Agency, AgencyApiKey
from tests.factories import PhoneNumberFactory, UserFactory

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


# ---- create_citizen ------------------------------------------------------------------------

def test_create_citizen_refused_outside_demo_mode(settings):
    settings.SONOR_DEMO = False
    with pytest.raises(CommandError, match="demo mode"):
        run("create_citizen", "УБ99011512", "--phone", "99112233")
    assert not User.objects.exists()


def test_create_citizen_forced_outside_demo_mode_is_logged(settings, caplog):
    settings.SONOR_DEMO = False
    with caplog.at_level(logging.WARNING):
        run("create_citizen", "УБ99011512", "--phone", "99112233", "--force")
    assert PhoneNumber.objects.get(user__register_number="УБ99011512").e164 == "+97699112233"
    assert any("--force" in record.getMessage() and record.levelno == logging.WARNING
               for record in caplog.records)


def test_create_citizen_in_demo_mode_binds_phone_in_e164(settings):
    settings.SONOR_DEMO = True
    output = run("create_citizen", "уб99011512", "--phone", "99112233", "--name", "Бат")
    user = User.objects.get()
    assert user.register_number == "УБ99011512"  # normalised to upper case
    assert user.name == "Бат"
    phone = PhoneNumber.objects.get(user=user, released_at__isnull=True)
    assert phone.e164 == "+97699112233"
    assert phone.verified_at is not None
    assert "+97699112233" in output


def test_create_citizen_twice_keeps_one_citizen_and_one_number(settings):
    settings.SONOR_DEMO = True
    run("create_citizen", "УБ99011512", "--phone", "+97699112233")
    run("create_citizen", "УБ99011512", "--phone", "99112233")
    assert User.objects.count() == 1
    assert PhoneNumber.objects.count() == 1


def test_create_citizen_takes_a_number_from_its_previous_owner(settings):
    settings.SONOR_DEMO = True
    previous = PhoneNumberFactory(e164="+97699112233")
    run("create_citizen", "УБ99011512", "--phone", "99112233")
    previous.refresh_from_db()
    assert previous.released_at is not None
    assert previous.release_reason == "reassigned"
    assert PhoneNumber.objects.get(released_at__isnull=True).user.register_number == "УБ99011512"


@pytest.mark.parametrize("register", ["УБ9901151", "1234567", "AB99011512", "УБ99131512"])
def test_create_citizen_bad_register_number(settings, register):
    settings.SONOR_DEMO = True
    with pytest.raises(CommandError, match="register"):
        run("create_citizen", register, "--phone", "99112233")
    assert not User.objects.exists()


def test_create_citizen_bad_phone_creates_nothing(settings):
    settings.SONOR_DEMO = True
    with pytest.raises(CommandError, match="phone number"):
        run("create_citizen", "УБ99011512", "--phone", "12")
    assert not User.objects.exists()


# ---- issue_token ---------------------------------------------------------------------------

def test_issue_token_prints_a_token_that_authenticates():
    user = UserFactory()
    token = run("issue_token", user.register_number, "--device", "load test").strip()
    session = session_authenticate(token=token)
    assert session.user == user
    assert session.login_method == "cli"
    assert session.device_name == "load test"
    assert session.token_hash == token_hash(token) != token


def test_issue_token_unknown_citizen():
    with pytest.raises(CommandError, match="No citizen"):
        run("issue_token", "УБ99011512")


def test_issue_token_bad_register_number():
    with pytest.raises(CommandError, match="register"):
        run("issue_token", "nope")


# ---- demo_setup and demo login links -------------------------------------------------------

LINK_RE = re.compile(r"/demo/login/([A-Za-z0-9_-]+)")
KEY_RE = re.compile(r"\b(sk_[A-Za-z0-9]{8}_[A-Za-z0-9_-]+)")


def test_demo_setup_refused_outside_demo_mode(settings):
    settings.SONOR_DEMO = False
    with pytest.raises(CommandError, match="demo mode"):
        run("demo_setup")
    assert not User.objects.exists()


def test_demo_setup_is_idempotent(settings, tmp_path):
    settings.SONOR_DEMO = True
    settings.DATA_DIR = tmp_path
    first = run("demo_setup", "--base-url", "http://127.0.0.1:8765/")
    second = run("demo_setup", "--base-url", "http://127.0.0.1:8765")

    assert User.objects.count() == 2
    assert {p.e164 for p in PhoneNumber.objects.filter(released_at__isnull=True)} == {
        "+97699112233", "+97688112233"}
    assert Agency.objects.count() == 1
    assert AgencyApiKey.objects.count() == 1
    keys = {KEY_RE.search(first).group(1), KEY_RE.search(second).group(1)}  # type: ignore[union-attr]
    assert len(keys) == 1
    key_file = tmp_path / "demo-agency-key"
    assert key_file.read_text().strip() == keys.pop()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "http://127.0.0.1:8765/demo/outbox" in first
    assert "http://127.0.0.1:8765/api/agency/v1/notifications" in first
    assert len(LINK_RE.findall(first)) == 2


def test_demo_setup_replaces_a_stale_key_file(settings, tmp_path):
    settings.SONOR_DEMO = True
    settings.DATA_DIR = tmp_path
    (tmp_path / "demo-agency-key").write_text("sk_AAAAAAAA_from-an-older-database\n")
    output = run("demo_setup")
    key = KEY_RE.search(output).group(1)  # type: ignore[union-attr]
    assert key != "sk_AAAAAAAA_from-an-older-database"
    assert AgencyApiKey.objects.get().key_hash == token_hash(key)
    assert (tmp_path / "demo-agency-key").read_text().strip() == key


def test_demo_login_link_is_consumed_once(settings, tmp_path):
    settings.SONOR_DEMO = True
    settings.DATA_DIR = tmp_path
    output = run("demo_setup")
    tokens = LINK_RE.findall(output)
    assert len(tokens) == 2
    assert not DemoLoginLink.objects.filter(token_hash__in=tokens).exists()  # hashes only

    user = demo_login_consume(token=tokens[0])
    assert user.register_number == "УБ99011512"
    assert DemoLoginLink.objects.get(token_hash=token_hash(tokens[0])).used_at is not None
    with pytest.raises(Unauthenticated):
        demo_login_consume(token=tokens[0])
    assert demo_login_consume(token=tokens[1]).register_number == "УБ05211522"


def test_demo_login_unknown_token(settings):
    settings.SONOR_DEMO = True
    with pytest.raises(Unauthenticated):
        demo_login_consume(token="not-a-token")


def test_demo_login_refused_outside_demo_mode(settings):
    settings.SONOR_DEMO = True
    token = demo_login_link_create(user=UserFactory())
    settings.SONOR_DEMO = False
    with pytest.raises(DemoOnly):
        demo_login_consume(token=token)
    with pytest.raises(DemoOnly):
        demo_login_link_create(user=UserFactory())
    assert DemoLoginLink.objects.get().used_at is None
