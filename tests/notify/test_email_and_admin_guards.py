"""Attacks on email addresses and the staff login: an old confirmation link found in a
mailbox, the confirmation mail aimed at someone else's mailbox again and again, password
guessing at /admin/, and a provider's error text that names the citizen's address."""

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from identity.models import User
from notify.models import DevOutboxMessage, NotifySettings
from tests.conftest import JsonClient
from tests.fakes.smtp import FakeSmtpServer

pytestmark = pytest.mark.django_db


def _links(address: str) -> list[str]:
    return [m.body.split(": ")[-1].removeprefix("http://127.0.0.1:8000")
            for m in DevOutboxMessage.objects.filter(sender_kind="email", address=address)
            .order_by("pk")]


def _verified(client: JsonClient) -> bool:
    return bool(client.get("/api/v1/preferences").json()["email_verified"])


def test_an_email_link_expires(api_client: JsonClient, settings: Any) -> None:
    settings.SONOR_EMAIL_VERIFY_HOURS = 24
    assert api_client.put("/api/v1/preferences", {"email": "bat@example.mn"}).status_code == 200
    NotifySettings.objects.update(
        email_token_expires_at=timezone.now() - timedelta(seconds=1))
    [link] = _links("bat@example.mn")
    response = Client().get(link)
    assert response.status_code == 404
    assert "expired" in response.content.decode()
    assert not _verified(api_client)

    # A new link, opened in time, works.
    assert api_client.put("/api/v1/preferences", {"email": "bat@example.mn"}).status_code == 200
    assert Client().get(_links("bat@example.mn")[-1]).status_code == 200
    assert _verified(api_client)


def test_setting_an_email_is_limited_per_citizen(api_client: JsonClient, settings: Any) -> None:
    settings.SONOR_EMAIL_SETS_PER_HOUR = 3
    for n in range(3):
        assert api_client.put("/api/v1/preferences", {"email": f"b{n}@example.mn"}
                              ).status_code == 200
    refused = api_client.put("/api/v1/preferences", {"email": "b9@example.mn",
                                                     "private_previews": True})
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited" and refused["Retry-After"]
    assert not _links("b9@example.mn")
    prefs = api_client.get("/api/v1/preferences").json()
    assert prefs["email"] == "b2@example.mn" and prefs["private_previews"] is False


def test_nobody_floods_one_mailbox_with_confirmation_mails(
        make_citizen: Any, make_token: Any, settings: Any) -> None:
    settings.SONOR_EMAIL_SETS_PER_HOUR = 3
    clients = [JsonClient(make_token(make_citizen())) for _ in range(4)]
    answers = [c.put("/api/v1/preferences", {"email": "Victim@Example.mn"}).status_code
               for c in clients[:3]]
    answers.append(clients[3].put("/api/v1/preferences",
                                  {"email": "victim@example.mn"}).status_code)
    assert answers == [200, 200, 200, 429]
    assert DevOutboxMessage.objects.filter(sender_kind="email").count() == 3


# ---- the staff login -----------------------------------------------------------------------

@pytest.fixture
def staff(db: None) -> User:
    return User.objects.create_superuser(register_number="УБ70010112", password="correct horse")


def _login(username: str, password: str, ip: str) -> int:
    client = Client(REMOTE_ADDR=ip)
    return client.post("/admin/login/?next=/admin/",  # type: ignore[no-any-return]
                       {"username": username, "password": password}).status_code


def test_admin_login_is_throttled_per_address(staff: User, settings: Any) -> None:
    settings.SONOR_ADMIN_LOGIN_ATTEMPTS = 3
    guesses = [_login(f"УБ7001011{n}", "guess", "198.51.100.4") for n in range(3)]
    assert guesses == [200, 200, 200]  # the form again, with an error
    # Even the right password is refused from that address for now.
    assert _login("УБ70010112", "correct horse", "198.51.100.4") == 429
    assert _login("УБ70010112", "correct horse", "198.51.100.5") == 302


def test_admin_login_is_throttled_per_user_name_across_addresses(
        staff: User, settings: Any) -> None:
    settings.SONOR_ADMIN_LOGIN_ATTEMPTS = 3
    guesses = [_login("уб70010112", "guess", f"198.51.100.{10 + n}") for n in range(3)]
    assert guesses == [200, 200, 200]
    assert _login("УБ70010112", "correct horse", "198.51.100.20") == 429


# ---- provider errors -----------------------------------------------------------------------

@pytest.fixture
def smtp_configured(smtp_server: FakeSmtpServer, settings: Any) -> Any:
    from notify.senders.registry import sender_for

    settings.SONOR_SMTP_URL = smtp_server.url()
    sender_for.cache_clear()
    yield smtp_server
    sender_for.cache_clear()


@pytest.mark.django_db(transaction=True)  # the POST is stored from the thread pool
def test_a_provider_error_shown_to_the_agency_names_no_address(
        smtp_configured: FakeSmtpServer, citizen: User, make_token: Any,
        agency_client: JsonClient) -> None:
    from notify.delivery import deliveries_process

    address = "bat.erdene@example.mn"
    NotifySettings.objects.create(user=citizen, email=address,
                                  email_verified_at=timezone.now())
    client = JsonClient(make_token(citizen))
    client.put("/api/v1/preferences", {"channels": {"service_request": {"email": True}}})
    smtp_configured.handler.rcpt_replies[address] = (
        f"550 5.1.1 <{address}>: mailbox of +976 8811 0001 does not exist")
    response = agency_client.post("/api/agency/v1/notifications", {
        "register_number": citizen.register_number, "category": "service_request",
        "title": "Лавлагаа бэлэн", "body": "Таны лавлагаа бэлэн боллоо."})
    assert response.status_code == 202, response.content
    while deliveries_process(worker_id="w1"):
        pass

    status = agency_client.get(f"/api/agency/v1/notifications/{response.json()['id']}").json()
    email = next(c for c in status["channels"] if c["channel"] == "email")
    [attempt] = email["attempts"]
    assert attempt["detail"].startswith("recipient refused: 550 5.1.1")
    text = str(status)
    assert address not in text and "8811" not in text and "example.mn" not in text
