"""Phone verification through the citizen API: codes by SMS, stored hashed, few attempts,
short-lived, rate-limited; a recycled number moves to its new owner with none of the old."""

import json
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from chatserver.core import protocol
from identity.models import PhoneNumber, PhoneVerification, User
from notify.models import Notification

# Transactional, as in a real request: on-commit events fire, and the embedded SMS sender's
# database_sync_to_async may close the connection between queries.
pytestmark = pytest.mark.django_db(transaction=True)

NUMBER = "+97699112233"
SAME_NUMBER = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "domain-vectors.json").read_text("utf-8")
)["phone_numbers"]["same_number"]


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


@pytest.fixture
def verify(make_api_client, sms_code) -> Callable[..., object]:
    """verify(token, phone) runs the whole flow and returns the verify response."""

    def run(token: str, phone: str, verify_as: str | None = None) -> object:
        client = make_api_client(token)
        started = client.post("/api/v1/phones", {"phone": phone})
        assert started.status_code == 202, started.content
        e164 = started.json()["phone"]
        return client.post("/api/v1/phones/verify",
                           {"phone": verify_as or phone, "code": sms_code(e164)})

    return run


def test_code_is_sent_by_sms_and_only_its_hash_is_stored(api_client, sent_sms, sms_code) -> None:
    response = api_client.post("/api/v1/phones", {"phone": "99112233"})
    assert response.status_code == 202
    assert response.json()["phone"] == NUMBER
    assert len(sent_sms(NUMBER)) == 1
    code = sms_code(NUMBER)

    verification = PhoneVerification.objects.get(e164=NUMBER)
    assert re.fullmatch(r"[0-9a-f]{64}", verification.code_hash)
    assert code not in verification.code_hash
    assert verification.expires_at > timezone.now()
    assert verification.attempts == 0 and verification.consumed_at is None
    assert code not in json.dumps(response.json())

    verified = api_client.post("/api/v1/phones/verify", {"phone": NUMBER, "code": code})
    assert verified.status_code == 200, verified.content
    assert verified.json()["phone"] == NUMBER
    assert api_client.get("/api/v1/me").json()["phone"] == NUMBER
    verification.refresh_from_db()
    assert verification.consumed_at is not None


@pytest.mark.django_db(transaction=False)
def test_a_code_can_be_sent_inside_a_transaction(citizen: User, sms_code) -> None:
    """Services compose inside one transaction (an admin action, a test case): sending the
    code must not close the connection under it."""
    from django.db import transaction

    from identity.services import phone_verification_start

    with transaction.atomic():
        verification = phone_verification_start(user=citizen, phone=NUMBER)
        assert PhoneVerification.objects.filter(pk=verification.pk).exists()
    assert sms_code(NUMBER)


def test_a_code_works_once(api_client, sms_code) -> None:
    api_client.post("/api/v1/phones", {"phone": NUMBER})
    code = sms_code(NUMBER)
    assert api_client.post("/api/v1/phones/verify",
                           {"phone": NUMBER, "code": code}).status_code == 200
    again = api_client.post("/api/v1/phones/verify", {"phone": NUMBER, "code": code})
    assert again.status_code == 400
    assert again.json()["code"] == "code_invalid"


@pytest.mark.parametrize("start_as", SAME_NUMBER)
def test_every_input_form_of_one_number_verifies_the_same_e164(
        citizen: User, make_token, verify, start_as: str) -> None:
    token = make_token(citizen)
    verify_as = SAME_NUMBER[(SAME_NUMBER.index(start_as) + 1) % len(SAME_NUMBER)]
    response = verify(token, start_as, verify_as=verify_as)
    assert response.status_code == 200, response.content  # type: ignore[attr-defined]
    assert response.json()["phone"] == NUMBER  # type: ignore[attr-defined]
    assert PhoneNumber.objects.get(user=citizen, released_at__isnull=True).e164 == NUMBER


def test_all_input_forms_start_verifications_of_the_same_number(api_client) -> None:
    for raw in SAME_NUMBER:
        response = api_client.post("/api/v1/phones", {"phone": raw})
        assert response.status_code == 202
        assert response.json()["phone"] == NUMBER
    assert set(PhoneVerification.objects.values_list("e164", flat=True)) == {NUMBER}


def test_fixed_line_is_refused_as_not_mobile(api_client, sent_sms) -> None:
    response = api_client.post("/api/v1/phones", {"phone": "70112233"})
    assert response.status_code == 400
    assert response.json()["code"] == "phone_not_mobile"
    assert sent_sms("+97670112233") == []
    assert not PhoneVerification.objects.exists()


def test_invalid_number_is_refused(api_client) -> None:
    response = api_client.post("/api/v1/phones", {"phone": "84112233"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_phone_number"


def test_wrong_codes_count_down_and_then_even_the_right_code_is_refused(
        api_client, sms_code, settings) -> None:
    attempts = settings.SONOR_PHONE_CODE_ATTEMPTS
    api_client.post("/api/v1/phones", {"phone": NUMBER})
    code = sms_code(NUMBER)
    for attempt in range(1, attempts):
        response = api_client.post("/api/v1/phones/verify",
                                   {"phone": NUMBER, "code": _wrong(code)})
        assert response.status_code == 400
        assert response.json()["code"] == "code_invalid"
        assert response.json()["extra"]["attempts_left"] == attempts - attempt
    last_wrong = api_client.post("/api/v1/phones/verify", {"phone": NUMBER, "code": _wrong(code)})
    assert last_wrong.json()["code"] == "code_attempts_exceeded"

    right = api_client.post("/api/v1/phones/verify", {"phone": NUMBER, "code": code})
    assert right.status_code == 400
    assert right.json()["code"] == "code_attempts_exceeded"
    assert not PhoneNumber.objects.filter(e164=NUMBER).exists()
    assert PhoneVerification.objects.get().attempts == attempts


def test_expired_code_is_refused(api_client, sms_code) -> None:
    api_client.post("/api/v1/phones", {"phone": NUMBER})
    code = sms_code(NUMBER)
    PhoneVerification.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = api_client.post("/api/v1/phones/verify", {"phone": NUMBER, "code": code})
    assert response.status_code == 400
    assert response.json()["code"] == "code_expired"
    assert not PhoneNumber.objects.filter(e164=NUMBER).exists()


def test_a_new_code_replaces_the_old_one(api_client, sms_code) -> None:
    api_client.post("/api/v1/phones", {"phone": NUMBER})
    old = sms_code(NUMBER)
    api_client.post("/api/v1/phones", {"phone": NUMBER})
    new = sms_code(NUMBER)
    if old != new:
        refused = api_client.post("/api/v1/phones/verify", {"phone": NUMBER, "code": old})
        assert refused.json()["code"] == "code_invalid"
    assert api_client.post("/api/v1/phones/verify",
                           {"phone": NUMBER, "code": new}).status_code == 200


def test_code_for_another_number_does_not_verify_this_one(api_client, sms_code) -> None:
    api_client.post("/api/v1/phones", {"phone": NUMBER})
    code = sms_code(NUMBER)
    response = api_client.post("/api/v1/phones/verify", {"phone": "+97688112233", "code": code})
    assert response.status_code == 400
    assert response.json()["code"] == "code_invalid"


def _assert_rate_limited(response: object) -> None:
    assert response.status_code == 429, response.content  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["code"] == "rate_limited"
    assert 0 < body["extra"]["retry_after"] <= 3600
    retry_after = response["Retry-After"]  # type: ignore[index]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 3600


def test_sixth_code_within_an_hour_for_one_user_is_rate_limited(
        api_client, settings, sent_sms) -> None:
    settings.SONOR_PHONE_CODES_PER_HOUR = 5
    for i in range(5):
        assert api_client.post("/api/v1/phones",
                               {"phone": f"+9769911220{i}"}).status_code == 202
    response = api_client.post("/api/v1/phones", {"phone": "+97699112209"})
    _assert_rate_limited(response)
    assert sent_sms("+97699112209") == []


def test_sixth_code_within_an_hour_to_one_number_is_rate_limited(
        make_citizen, make_token, make_api_client, sent_sms, settings) -> None:
    settings.SONOR_PHONE_CODES_PER_HOUR = 5
    for _ in range(5):
        client = make_api_client(make_token(make_citizen()))
        assert client.post("/api/v1/phones", {"phone": NUMBER}).status_code == 202
    client = make_api_client(make_token(make_citizen()))
    _assert_rate_limited(client.post("/api/v1/phones", {"phone": NUMBER}))
    assert len(sent_sms(NUMBER)) == 5


def test_rate_limit_is_lifted_after_an_hour(api_client, settings) -> None:
    settings.SONOR_PHONE_CODES_PER_HOUR = 5
    for _ in range(5):
        api_client.post("/api/v1/phones", {"phone": NUMBER})
    PhoneVerification.objects.update(created_at=timezone.now() - timedelta(hours=1, seconds=1))
    assert api_client.post("/api/v1/phones", {"phone": NUMBER}).status_code == 202


def test_same_citizen_reverifying_keeps_the_same_phone_row(
        citizen: User, session_token: str, verify) -> None:
    row = PhoneNumber.objects.get(user=citizen, released_at__isnull=True)
    response = verify(session_token, row.e164)
    assert response.status_code == 200  # type: ignore[attr-defined]
    again = PhoneNumber.objects.get(user=citizen, released_at__isnull=True)
    assert again.pk == row.pk
    assert again.verified_at == row.verified_at
    assert PhoneNumber.objects.filter(user=citizen).count() == 1


def test_a_new_number_replaces_the_citizens_old_one(
        citizen: User, session_token: str, verify, api_client) -> None:
    old = PhoneNumber.objects.get(user=citizen, released_at__isnull=True)
    assert verify(session_token, NUMBER).status_code == 200  # type: ignore[attr-defined]
    old.refresh_from_db()
    assert old.released_at is not None
    assert api_client.get("/api/v1/me").json()["phone"] == NUMBER


def test_recycled_number_moves_to_its_new_owner_with_nothing_of_the_old(
        make_citizen, make_token, make_api_client, verify) -> None:
    alice = make_citizen(phone=NUMBER)
    bob = make_citizen()
    alice_client = make_api_client(make_token(alice))
    bob_token = make_token(bob)

    response = verify(bob_token, "99112233")
    assert response.status_code == 200, response.content  # type: ignore[attr-defined]

    assert make_api_client(bob_token).get("/api/v1/me").json()["phone"] == NUMBER
    # The number's new owner may hold Alice's old SIM: her devices are logged out.
    refused = alice_client.get("/api/v1/me")
    assert (refused.status_code, refused.json()["code"]) == (401, "unauthenticated")
    assert make_api_client(make_token(alice)).get("/api/v1/me").json()["phone"] is None
    released = PhoneNumber.objects.get(user=alice)
    assert released.released_at is not None and released.release_reason == "reassigned"
    assert PhoneNumber.objects.get(e164=NUMBER, released_at__isnull=True).user_id == bob.pk

    lost = Notification.objects.get(user=alice)
    assert lost.category == "security"
    assert not Notification.objects.filter(user=bob).exists()


async def test_recycled_number_old_owners_live_socket_is_told(
        make_citizen, make_token, make_api_client, verify, ws_connect) -> None:
    alice = await database_sync_to_async(make_citizen)(phone=NUMBER)
    bob = await database_sync_to_async(make_citizen)()
    socket = await ws_connect(await database_sync_to_async(make_token)(alice))
    welcome = await socket.request({"type": "hello", "id": "h"})
    assert isinstance(welcome, protocol.Welcome) and welcome.user.phone == NUMBER

    bob_token = await database_sync_to_async(make_token)(bob)
    response = await database_sync_to_async(verify)(bob_token, NUMBER)
    assert response.status_code == 200  # type: ignore[attr-defined]

    new, unread = await socket.receive_frames(2)
    assert isinstance(new, protocol.NotifyNew)
    assert (new.category, new.seq) == ("security", 1)
    assert NUMBER in new.body
    assert unread == protocol.NotifyUnread(count=1)
    assert await socket.receive_frame() == protocol.SessionRevoked(reason="number_lost")
    await socket.expect_close(protocol.CLOSE_UNAUTHENTICATED)
