"""Sessions end on the server (idle and absolute lifetimes), and closing an account needs a
fresh confirmation. Attacks: a token found on an old device long after its owner stopped
using it; a stolen or borrowed session that tries to close the account in one request."""

from datetime import datetime, timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from chatserver.core import protocol
from identity.models import DeviceSession, User
from identity.services import session_create, token_hash

IDLE, MAX = 30, 180


@pytest.fixture(autouse=True)
def lifetimes(settings: Any) -> None:
    settings.SONOR_SESSION_IDLE_DAYS = IDLE
    settings.SONOR_SESSION_MAX_DAYS = MAX


def _age(token: str, *, created_days: float = 0, idle_days: float = 0) -> DeviceSession:
    """Move a session back in time: logged in `created_days` ago, last used `idle_days` ago."""
    now = timezone.now()
    DeviceSession.objects.filter(token_hash=token_hash(token)).update(
        created_at=now - timedelta(days=created_days), last_seen_at=now - timedelta(days=idle_days))
    return DeviceSession.objects.get(token_hash=token_hash(token))


def _error(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


# ---- lifetimes -----------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize(("created_days", "idle_days"), [(40, IDLE + 1), (MAX + 1, 0.001)])
def test_an_expired_session_is_refused_with_session_expired(
        citizen: User, make_token, make_api_client, created_days: float, idle_days: float
) -> None:
    token = make_token(citizen, "old phone")
    other = make_token(citizen, "new phone")
    _age(token, created_days=created_days, idle_days=idle_days)
    assert _error(make_api_client(token).get("/api/v1/me")) == (401, "session_expired")
    # Ended for good: it is gone from the list, and asking again is still refused.
    listed = make_api_client(other).get("/api/v1/sessions").json()
    assert [s["device_name"] for s in listed] == ["new phone"]
    assert _error(make_api_client(token).get("/api/v1/me"))[0] == 401


@pytest.mark.django_db
def test_a_session_used_within_its_lifetimes_works_and_lists_when_it_ends(
        citizen: User, make_token, make_api_client) -> None:
    token = make_token(citizen)
    session = _age(token, created_days=MAX - 1, idle_days=IDLE - 1)
    response = make_api_client(token).get("/api/v1/sessions")
    assert response.status_code == 200
    [listed] = response.json()
    session.refresh_from_db()  # this request was its use
    expected = session.created_at + timedelta(days=MAX)
    assert abs(datetime.fromisoformat(listed["expires_at"]) - expected) < timedelta(seconds=1)
    # The absolute end comes first here, so the idle end is capped by it.
    assert listed["idle_expires_at"] == listed["expires_at"]

    fresh = make_api_client(make_token(citizen, "new")).get("/api/v1/sessions").json()
    new = next(s for s in fresh if s["current"])
    assert new["idle_expires_at"] < new["expires_at"]


@pytest.mark.django_db
def test_last_use_is_written_at_most_every_few_minutes(citizen: User, make_token,
                                                       make_api_client) -> None:
    token = make_token(citizen)
    client = make_api_client(token)
    recent = _age(token, idle_days=1 / 24 / 60).last_seen_at  # a minute ago
    assert client.get("/api/v1/me").status_code == 200
    assert DeviceSession.objects.get(token_hash=token_hash(token)).last_seen_at == recent
    stale = _age(token, idle_days=1 / 24 / 6).last_seen_at  # ten minutes ago
    assert client.get("/api/v1/me").status_code == 200
    assert DeviceSession.objects.get(token_hash=token_hash(token)).last_seen_at > stale


@pytest.mark.django_db(transaction=True)
async def test_an_expired_session_cannot_open_a_socket(ws_connect, citizen: User,
                                                       make_token) -> None:
    token = await database_sync_to_async(make_token)(citizen)
    await database_sync_to_async(_age)(token, idle_days=IDLE + 1)
    socket = await ws_connect(token)
    await socket.expect_close(protocol.CLOSE_UNAUTHENTICATED)


@pytest.mark.django_db(transaction=True)
async def test_an_open_socket_whose_session_expires_is_told_and_closed(
        ws_connect, citizen: User, make_token, settings: Any) -> None:
    settings.SONOR_WS_SESSION_RECHECK = 0.1
    token = await database_sync_to_async(make_token)(citizen)
    socket = await ws_connect(token, ready=True)
    await database_sync_to_async(_age)(token, created_days=MAX + 1)
    # The server re-checks its open sockets' sessions on its own: the client need not talk.
    assert await socket.receive_frame() == protocol.SessionRevoked(reason="expired")
    await socket.expect_close(protocol.CLOSE_UNAUTHENTICATED)


# ---- closing the account -------------------------------------------------------------------

def _status(user: User) -> str:
    user.refresh_from_db()
    return user.status


@pytest.fixture
def old_session(citizen: User) -> str:
    """A session that logged in an hour ago: what a thief of a token has."""
    token = session_create(user=citizen, login_method="test", device_name="phone")[1]
    DeviceSession.objects.filter(token_hash=token_hash(token)).update(
        created_at=timezone.now() - timedelta(hours=1))
    return token


@pytest.mark.django_db
def test_closing_from_an_old_session_without_a_code_is_refused(
        citizen: User, old_session: str, make_api_client) -> None:
    client = make_api_client(old_session)
    assert _error(client.post("/api/v1/account/close")) == (403, "confirmation_required")
    assert _status(citizen) == User.Status.ACTIVE
    assert client.get("/api/v1/me").status_code == 200


@pytest.mark.django_db
def test_closing_with_the_sms_code_sent_to_the_verified_phone(
        citizen: User, old_session: str, make_api_client, sms_code, settings: Any) -> None:
    client = make_api_client(old_session)
    started = client.post("/api/v1/account/close/code")
    assert started.status_code == 202, started.content
    phone = started.json()["phone"]
    code = sms_code(phone)

    wrong = "000000" if code != "000000" else "111111"
    assert _error(client.post("/api/v1/account/close", {"code": wrong})) == (400, "code_invalid")
    assert _status(citizen) == User.Status.ACTIVE

    assert client.post("/api/v1/account/close", {"code": code}).status_code == 204
    assert _status(citizen) == User.Status.CLOSED
    assert _error(client.get("/api/v1/me"))[0] in (401, 403)


@pytest.mark.django_db
def test_a_phone_verification_code_does_not_close_the_account(
        citizen: User, old_session: str, make_api_client, sms_code) -> None:
    client = make_api_client(old_session)
    phone = client.get("/api/v1/me").json()["phone"]
    assert client.post("/api/v1/phones", {"phone": phone}).status_code == 202
    response = client.post("/api/v1/account/close", {"code": sms_code(phone)})
    assert _error(response) == (400, "code_invalid")
    assert _status(citizen) == User.Status.ACTIVE


@pytest.mark.django_db
def test_wrong_close_codes_run_out(citizen: User, old_session: str, make_api_client,
                                   sms_code, settings: Any) -> None:
    settings.SONOR_PHONE_CODE_ATTEMPTS = 2
    client = make_api_client(old_session)
    phone = client.post("/api/v1/account/close/code").json()["phone"]
    code = sms_code(phone)
    wrong = "000000" if code != "000000" else "111111"
    assert _error(client.post("/api/v1/account/close", {"code": wrong})) == (400, "code_invalid")
    assert _error(client.post("/api/v1/account/close", {"code": wrong})) == (
        400, "code_attempts_exceeded")
    assert _error(client.post("/api/v1/account/close", {"code": code})) == (
        400, "code_attempts_exceeded")
    assert _status(citizen) == User.Status.ACTIVE


@pytest.mark.django_db
def test_a_fresh_login_may_close_without_a_code(citizen: User, make_token,
                                                make_api_client) -> None:
    assert make_api_client(make_token(citizen)).post("/api/v1/account/close").status_code == 204
    assert _status(citizen) == User.Status.CLOSED


@pytest.mark.django_db
def test_no_code_without_a_verified_phone(make_citizen, make_api_client) -> None:
    user = make_citizen()
    token = session_create(user=user, login_method="test")[1]
    assert _error(make_api_client(token).post("/api/v1/account/close/code")) == (
        409, "no_verified_phone")
