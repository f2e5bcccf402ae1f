"""Device sessions through the citizen API and the device socket: list, logout (revoke),
revoke-others, account close, suspension, and the web client's cookie."""

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from chatserver.core import protocol
from identity.accounts import user_suspend, user_unsuspend
from identity.models import DeviceSession, PhoneNumber, User
from notify.inbox import notification_create
from notify.models import Notification

FOREIGN_ORIGIN = "https://evil.example"


def _session_id(token: str) -> int:
    from identity.services import token_hash

    return DeviceSession.objects.get(token_hash=token_hash(token)).pk


def _error_code(response: object) -> tuple[int, str]:
    return response.status_code, response.json()["code"]  # type: ignore[attr-defined]


# ---- list, revoke, revoke-others -----------------------------------------------------------

@pytest.mark.django_db
def test_sessions_list_marks_the_current_one(citizen: User, make_token,
                                             make_api_client) -> None:
    phone_token = make_token(citizen, "phone")
    web_token = make_token(citizen, "web")
    revoked_token = make_token(citizen, "old")
    make_api_client(revoked_token).post("/api/v1/logout")

    response = make_api_client(web_token).get("/api/v1/sessions")
    assert response.status_code == 200
    listed = {s["id"]: s for s in response.json()}
    assert set(listed) == {_session_id(phone_token), _session_id(web_token)}
    assert listed[_session_id(web_token)]["current"] is True
    assert listed[_session_id(web_token)]["device_name"] == "web"
    assert listed[_session_id(phone_token)]["current"] is False


@pytest.mark.django_db
def test_sessions_list_shows_only_ones_own(citizen: User, make_citizen, make_token,
                                           make_api_client) -> None:
    token = make_token(citizen)
    make_token(make_citizen())
    assert [s["id"] for s in make_api_client(token).get("/api/v1/sessions").json()] == [
        _session_id(token)]


@pytest.mark.django_db
def test_delete_session_revokes_its_token(citizen: User, make_token, make_api_client) -> None:
    phone_token = make_token(citizen, "phone")
    web = make_api_client(make_token(citizen, "web"))
    response = web.delete(f"/api/v1/sessions/{_session_id(phone_token)}")
    assert response.status_code == 204
    assert _error_code(make_api_client(phone_token).get("/api/v1/me")) == (401,
                                                                           "unauthenticated")
    assert web.get("/api/v1/me").status_code == 200
    assert DeviceSession.objects.get(pk=_session_id(phone_token)).revoked_at is not None


@pytest.mark.django_db
def test_delete_of_another_users_session_is_not_found_and_changes_nothing(
        citizen: User, make_citizen, make_token, make_api_client) -> None:
    mine = make_api_client(make_token(citizen))
    their_token = make_token(make_citizen())
    response = mine.delete(f"/api/v1/sessions/{_session_id(their_token)}")
    assert _error_code(response) == (404, "not_found")
    assert make_api_client(their_token).get("/api/v1/me").status_code == 200
    assert DeviceSession.objects.get(pk=_session_id(their_token)).revoked_at is None


@pytest.mark.django_db
def test_delete_of_an_unknown_session_is_not_found(api_client) -> None:
    assert _error_code(api_client.delete("/api/v1/sessions/999999")) == (404, "not_found")


@pytest.mark.django_db
def test_revoke_others_keeps_only_the_current_session(citizen: User, make_citizen, make_token,
                                                      make_api_client) -> None:
    current = make_token(citizen, "this")
    others = [make_token(citizen, f"other {i}") for i in range(2)]
    stranger = make_token(make_citizen())
    response = make_api_client(current).post("/api/v1/sessions/revoke-others")
    assert response.status_code == 200
    assert response.json() == {"revoked": 2}
    for token in others:
        assert _error_code(make_api_client(token).get("/api/v1/me")) == (401, "unauthenticated")
    assert make_api_client(current).get("/api/v1/me").status_code == 200
    assert make_api_client(stranger).get("/api/v1/me").status_code == 200


@pytest.mark.django_db
def test_logout_revokes_the_current_session(api_client) -> None:
    assert api_client.post("/api/v1/logout").status_code == 204
    assert _error_code(api_client.get("/api/v1/me")) == (401, "unauthenticated")


# ---- live sockets --------------------------------------------------------------------------

async def _expect_revoked(socket, reason: str | None = None) -> None:
    frame = await socket.receive_frame()
    assert isinstance(frame, protocol.SessionRevoked)
    if reason is not None:
        assert frame.reason == reason
    await socket.expect_close(protocol.CLOSE_UNAUTHENTICATED)


async def _still_open(socket) -> None:
    assert await socket.receive_nothing(timeout=0.2)
    assert await socket.request({"type": "ping", "id": "alive"}) == protocol.Pong(id="alive")


@pytest.mark.django_db(transaction=True)
async def test_delete_session_closes_its_socket_and_only_its_socket(
        ws_connect, citizen: User, make_token, make_api_client) -> None:
    phone_token = await database_sync_to_async(make_token)(citizen, "phone")
    web_token = await database_sync_to_async(make_token)(citizen, "web")
    phone_socket = await ws_connect(phone_token, ready=True)
    web_socket = await ws_connect(web_token, ready=True)
    await _still_open(phone_socket)

    session_id = await database_sync_to_async(_session_id)(phone_token)
    response = await database_sync_to_async(make_api_client(web_token).delete)(
        f"/api/v1/sessions/{session_id}")
    assert response.status_code == 204

    await _expect_revoked(phone_socket, "logout")
    await _still_open(web_socket)
    refused = await ws_connect(phone_token)
    await refused.expect_close(protocol.CLOSE_UNAUTHENTICATED)


@pytest.mark.django_db(transaction=True)
async def test_revoke_others_closes_the_other_sockets(
        ws_connect, citizen: User, make_token, make_api_client) -> None:
    tokens = [await database_sync_to_async(make_token)(citizen, f"d{i}") for i in range(3)]
    sockets = [await ws_connect(token, ready=True) for token in tokens]
    response = await database_sync_to_async(make_api_client(tokens[0]).post)(
        "/api/v1/sessions/revoke-others")
    assert response.json() == {"revoked": 2}
    for socket in sockets[1:]:
        await _expect_revoked(socket, "logout")
    await _still_open(sockets[0])


@pytest.mark.django_db(transaction=True)
async def test_account_close_ends_every_socket_and_token_and_keeps_the_data(
        ws_connect, citizen: User, make_citizen, make_token, make_api_client) -> None:
    tokens = [await database_sync_to_async(make_token)(citizen, f"d{i}") for i in range(2)]
    notification = await database_sync_to_async(notification_create)(
        user=citizen, category="petition", title="Өргөдөл", body="Хүлээн авлаа.")
    sockets = [await ws_connect(token, ready=True) for token in tokens]
    other = await database_sync_to_async(make_citizen)()
    other_socket = await ws_connect(await database_sync_to_async(make_token)(other), ready=True)

    response = await database_sync_to_async(make_api_client(tokens[0]).post)(
        "/api/v1/account/close")
    assert response.status_code == 204

    for socket in sockets:
        await _expect_revoked(socket, "account_closed")
    await _still_open(other_socket)
    for token in tokens:
        refused = await database_sync_to_async(make_api_client(token).get)("/api/v1/me")
        assert refused.status_code in (401, 403)
        assert refused.json()["code"] in ("unauthenticated", "account_inactive")
        socket = await ws_connect(token)
        await socket.expect_close(protocol.CLOSE_UNAUTHENTICATED)

    def data_kept() -> None:
        citizen.refresh_from_db()
        assert citizen.status == User.Status.CLOSED
        assert Notification.objects.filter(pk=notification.pk, user=citizen).exists()
        assert PhoneNumber.objects.filter(user=citizen).exists()
        assert User.objects.filter(pk=citizen.pk).exists()

    await database_sync_to_async(data_kept)()


@pytest.mark.django_db(transaction=True)
async def test_suspension_closes_sockets_refuses_tokens_and_lifting_it_restores_them(
        ws_connect, citizen: User, make_token, make_api_client) -> None:
    tokens = [await database_sync_to_async(make_token)(citizen, f"d{i}") for i in range(2)]
    sockets = [await ws_connect(token, ready=True) for token in tokens]

    await database_sync_to_async(user_suspend)(user=citizen)
    for socket in sockets:
        await _expect_revoked(socket, "suspended")
    for token in tokens:
        refused = await database_sync_to_async(make_api_client(token).get)("/api/v1/me")
        assert _error_code(refused) == (403, "account_inactive")
        socket = await ws_connect(token)
        await socket.expect_close(protocol.CLOSE_UNAUTHENTICATED)

    await database_sync_to_async(user_unsuspend)(user=citizen)
    for token in tokens:
        me = await database_sync_to_async(make_api_client(token).get)("/api/v1/me")
        assert me.status_code == 200
        assert me.json()["id"] == citizen.pk
        await ws_connect(token, ready=True)


# ---- the web client's cookie ---------------------------------------------------------------

def _cookie_client(token: str) -> Client:
    from django.conf import settings

    client = Client()
    client.cookies[settings.SONOR_SESSION_COOKIE] = token
    return client


@pytest.mark.django_db
def test_cookie_is_set_httponly_and_samesite_strict_from_an_allowed_origin(
        session_token: str, settings) -> None:
    origin = settings.SONOR_ALLOWED_ORIGINS[0]
    response = Client().post("/api/v1/auth/cookie", {"token": session_token},
                             content_type="application/json", headers={"Origin": origin})
    assert response.status_code == 204
    cookie = response.cookies[settings.SONOR_SESSION_COOKIE]
    assert cookie.value == session_token
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/"
    assert int(cookie["max-age"]) > 0

    me = _cookie_client(session_token).get("/api/v1/me")
    assert me.status_code == 200


@pytest.mark.parametrize("headers", [{}, {"Origin": FOREIGN_ORIGIN}, {"Origin": "null"}])
@pytest.mark.django_db
def test_cookie_is_refused_without_an_allowed_origin(session_token: str, settings,
                                                     headers: dict[str, str]) -> None:
    response = Client().post("/api/v1/auth/cookie", {"token": session_token},
                             content_type="application/json", headers=headers)
    assert _error_code(response) == (403, "origin_forbidden")
    assert settings.SONOR_SESSION_COOKIE not in response.cookies


@pytest.mark.django_db
def test_cookie_is_refused_for_a_bad_token(settings) -> None:
    response = Client().post("/api/v1/auth/cookie", {"token": "nope"},
                             content_type="application/json",
                             headers={"Origin": settings.SONOR_ALLOWED_ORIGINS[0]})
    assert _error_code(response) == (401, "unauthenticated")
    assert settings.SONOR_SESSION_COOKIE not in response.cookies


@pytest.mark.parametrize("headers", [{"Origin": FOREIGN_ORIGIN}, {}])
@pytest.mark.django_db
def test_cookie_authenticated_unsafe_request_needs_an_allowed_origin(
        citizen: User, make_token, headers: dict[str, str]) -> None:
    token = make_token(citizen, "web")
    other = make_token(citizen, "phone")
    response = _cookie_client(token).delete(f"/api/v1/sessions/{_session_id(other)}",
                                            headers=headers)
    assert _error_code(response) == (403, "origin_forbidden")
    assert DeviceSession.objects.get(pk=_session_id(other)).revoked_at is None
    # Reads are not state-changing: a cookie GET needs no Origin.
    assert _cookie_client(token).get("/api/v1/me").status_code == 200


@pytest.mark.django_db
def test_cookie_authenticated_unsafe_request_from_an_allowed_origin_works(
        citizen: User, make_token, settings) -> None:
    token = make_token(citizen, "web")
    other = make_token(citizen, "phone")
    response = _cookie_client(token).delete(
        f"/api/v1/sessions/{_session_id(other)}",
        headers={"Origin": settings.SONOR_ALLOWED_ORIGINS[0]})
    assert response.status_code == 204
    assert DeviceSession.objects.get(pk=_session_id(other)).revoked_at is not None
