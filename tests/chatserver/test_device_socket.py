"""The device socket /ws/v1 through the real ASGI application: auth, hello/resume, limits,
errors and live inbox events. Every received frame is validated against its protocol model."""

import json
from collections.abc import Awaitable, Callable

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from chatserver.core import protocol
from identity.models import User
from notify.inbox import notification_create
from notify.models import Notification

pytestmark = pytest.mark.django_db(transaction=True)

Connect = Callable[..., Awaitable[object]]
FOREIGN_ORIGIN = "https://evil.example"


@database_sync_to_async
def notify(user: User, title: str = "Өргөдөл", category: str = "service_request"
           ) -> Notification:
    return notification_create(user=user, category=category, title=title,
                               body="Таны өргөдөл хүлээн авлаа.",
                               link="https://e-mongolia.mn/requests/1")


# ---- authentication on connect -------------------------------------------------------------

async def test_no_credentials_closes_4401(ws_connect) -> None:
    socket = await ws_connect()
    await socket.expect_close(protocol.CLOSE_UNAUTHENTICATED)


async def test_bad_token_closes_4401(ws_connect, session_token: str) -> None:
    socket = await ws_connect("not-a-token")
    await socket.expect_close(protocol.CLOSE_UNAUTHENTICATED)


async def test_bearer_header_works_without_origin(ws_connect, session_token: str) -> None:
    socket = await ws_connect(session_token)
    pong = await socket.request({"type": "ping", "id": "p1"})
    assert pong == protocol.Pong(id="p1")


async def test_cookie_without_origin_closes_4401(ws_connect, session_token: str) -> None:
    # A cookie is only honoured from our own pages, and browsers always send Origin.
    socket = await ws_connect(cookie=session_token)
    await socket.expect_close(protocol.CLOSE_UNAUTHENTICATED)


async def test_cookie_with_allowed_origin_works(ws_connect, session_token: str,
                                                settings) -> None:
    socket = await ws_connect(cookie=session_token, origin=settings.SONOR_ALLOWED_ORIGINS[0])
    assert await socket.request({"type": "ping", "id": "p"}) == protocol.Pong(id="p")


@pytest.mark.parametrize("with_token", [True, False])
async def test_foreign_origin_closes_4403(ws_connect, session_token: str,
                                          with_token: bool) -> None:
    socket = await ws_connect(session_token if with_token else None, origin=FOREIGN_ORIGIN,
                              cookie=session_token)
    await socket.expect_close(protocol.CLOSE_ORIGIN_FORBIDDEN)


# ---- hello / welcome / resume --------------------------------------------------------------

async def test_hello_returns_welcome_with_user_phone_inbox_seq_and_unread(
        ws_connect, citizen: User, session_token: str) -> None:
    await notify(citizen)
    await notify(citizen)
    socket = await ws_connect(session_token)
    welcome = await socket.request({"type": "hello", "id": "h1"})
    assert isinstance(welcome, protocol.Welcome)
    assert welcome.id == "h1"
    assert welcome.user.id == citizen.pk
    assert welcome.user.name == citizen.name
    phone = await database_sync_to_async(lambda: citizen.phones.get().e164)()
    assert welcome.user.phone == phone
    assert welcome.inbox_seq == 2
    assert welcome.unread == 2
    assert welcome.resync == []
    assert await socket.receive_nothing(timeout=0.2)


async def test_hello_resume_returns_exactly_the_missed_events_in_order(
        ws_connect, citizen: User, session_token: str) -> None:
    created = [await notify(citizen, title=f"n{i}") for i in range(1, 4)]
    socket = await ws_connect(session_token)
    await socket.send_json_to({"type": "hello", "id": "h", "resume": {"inbox": 1}})
    welcome, *missed = await socket.receive_frames(3)
    assert isinstance(welcome, protocol.Welcome)
    assert welcome.inbox_seq == 3
    assert welcome.resync == []
    assert all(isinstance(f, protocol.NotifyNew) for f in missed)
    assert [(f.seq, f.id, f.title) for f in missed] == [  # type: ignore[attr-defined]
        (2, created[1].pk, "n2"), (3, created[2].pk, "n3")]
    assert await socket.receive_nothing(timeout=0.2)


async def test_hello_resume_up_to_date_returns_nothing_after_welcome(
        ws_connect, citizen: User, session_token: str) -> None:
    await notify(citizen)
    socket = await ws_connect(session_token)
    welcome = await socket.request({"type": "hello", "id": "h", "resume": {"inbox": 1}})
    assert isinstance(welcome, protocol.Welcome)
    assert welcome.resync == []
    assert await socket.receive_nothing(timeout=0.2)


async def test_hello_resume_too_old_says_resync_and_sends_no_partial_events(
        ws_connect, citizen: User, session_token: str, settings) -> None:
    settings.SONOR_RESUME_LIMIT = 2
    for i in range(5):
        await notify(citizen, title=f"n{i}")
    socket = await ws_connect(session_token)
    welcome = await socket.request({"type": "hello", "id": "h", "resume": {"inbox": 1}})
    assert isinstance(welcome, protocol.Welcome)
    assert "inbox" in welcome.resync
    assert welcome.inbox_seq == 5
    assert await socket.receive_nothing(timeout=0.3)


async def test_hello_resume_at_the_limit_is_still_answered_exactly(
        ws_connect, citizen: User, session_token: str, settings) -> None:
    settings.SONOR_RESUME_LIMIT = 2
    for i in range(3):
        await notify(citizen, title=f"n{i}")
    socket = await ws_connect(session_token)
    await socket.send_json_to({"type": "hello", "id": "h", "resume": {"inbox": 1}})
    welcome, *missed = await socket.receive_frames(3)
    assert isinstance(welcome, protocol.Welcome) and welcome.resync == []
    assert [f.seq for f in missed] == [2, 3]  # type: ignore[attr-defined]


# ---- requests, errors and limits -----------------------------------------------------------

async def test_ping_pong_carries_the_id(ws_connect, session_token: str) -> None:
    socket = await ws_connect(session_token)
    assert await socket.request({"type": "ping", "id": "abc-123"}) == protocol.Pong(id="abc-123")


async def test_unknown_type_is_unknown_frame_with_the_id(ws_connect, session_token: str) -> None:
    socket = await ws_connect(session_token)
    error = await socket.request({"type": "chat.fly", "id": "u1"})
    assert isinstance(error, protocol.ErrorFrame)
    assert (error.code, error.id) == ("unknown_frame", "u1")


async def test_missing_type_is_unknown_frame(ws_connect, session_token: str) -> None:
    socket = await ws_connect(session_token)
    error = await socket.request({"id": "u2"})
    assert isinstance(error, protocol.ErrorFrame)
    assert (error.code, error.id) == ("unknown_frame", "u2")


@pytest.mark.parametrize("frame", [
    {"type": "notify.read", "id": "v1", "ids": []},
    {"type": "notify.read", "id": "v1", "ids": ["one"]},
    {"type": "hello", "id": "v1", "resume": {"inbox": -1}},
    {"type": "ping", "id": "v1", "extra": True},
])
async def test_invalid_field_is_invalid_input_with_the_id(ws_connect, session_token: str,
                                                          frame: dict[str, object]) -> None:
    socket = await ws_connect(session_token)
    error = await socket.request(frame)
    assert isinstance(error, protocol.ErrorFrame)
    assert (error.code, error.id) == ("invalid_input", "v1")
    assert error.extra["errors"]


@pytest.mark.parametrize("text", ["not json", "{\"type\": \"ping\", \"id\": ", "[1, 2"])
async def test_non_json_is_invalid_input_with_null_id(ws_connect, session_token: str,
                                                      text: str) -> None:
    socket = await ws_connect(session_token)
    await socket.send_to(text_data=text)
    error = await socket.receive_frame()
    assert isinstance(error, protocol.ErrorFrame)
    assert (error.code, error.id) == ("invalid_input", None)


async def test_frame_over_64_kib_is_refused_and_the_socket_stays_usable(
        ws_connect, session_token: str) -> None:
    socket = await ws_connect(session_token)
    big = json.dumps({"type": "ping", "id": "big", "pad": "x" * (64 * 1024)})
    await socket.send_to(text_data=big)
    error = await socket.receive_frame()
    assert isinstance(error, protocol.ErrorFrame)
    assert error.code == "frame_too_large"
    assert await socket.request({"type": "ping", "id": "after"}) == protocol.Pong(id="after")


async def test_frame_of_exactly_64_kib_is_read(ws_connect, session_token: str) -> None:
    socket = await ws_connect(session_token)
    head = '{"type": "ping", "id": "p", "pad": "'
    text = head + "x" * (64 * 1024 - len(head) - 2) + '"}'
    assert len(text.encode()) == 64 * 1024
    await socket.send_to(text_data=text)
    error = await socket.receive_frame()
    # Read and parsed (the pad field is not part of ping), not refused for its size.
    assert isinstance(error, protocol.ErrorFrame)
    assert (error.code, error.id) == ("invalid_input", "p")


async def test_rate_limit_answers_rate_limited_with_retry_after(
        ws_connect, session_token: str, settings) -> None:
    settings.SONOR_WS_RATE_BURST = 3
    settings.SONOR_WS_RATE_PER_SECOND = 0.5
    socket = await ws_connect(session_token)
    for i in range(4):
        await socket.send_json_to({"type": "ping", "id": f"r{i}"})
    replies = await socket.receive_frames(4)
    assert replies[:3] == [protocol.Pong(id=f"r{i}") for i in range(3)]
    error = replies[3]
    assert isinstance(error, protocol.ErrorFrame)
    assert (error.code, error.id) == ("rate_limited", "r3")
    assert 0 < float(error.extra["retry_after"]) <= 2  # type: ignore[arg-type]


async def test_refused_frames_spend_from_the_rate_budget(
        ws_connect, session_token: str, settings) -> None:
    settings.SONOR_WS_RATE_BURST = 3
    settings.SONOR_WS_RATE_PER_SECOND = 0.5
    socket = await ws_connect(session_token)
    garbage = ["{not json", "x" * (65 * 1024), '{"type": "no.such", "id": "g"}']
    for text in garbage:
        await socket.send_to(text_data=text)
    codes = [frame.code for frame in await socket.receive_frames(3)]  # type: ignore[attr-defined]
    assert codes == ["invalid_input", "frame_too_large", "unknown_frame"]
    # The budget went on garbage: a valid frame now waits like any other over the rate.
    error = await socket.request({"type": "ping", "id": "after"})
    assert isinstance(error, protocol.ErrorFrame)
    assert (error.code, error.id) == ("rate_limited", "after")


async def test_a_socket_that_keeps_sending_garbage_is_closed_4429(
        ws_connect, session_token: str, settings) -> None:
    settings.SONOR_WS_REFUSED_BURST = 5
    settings.SONOR_WS_REFUSED_PER_SECOND = 0.1
    socket = await ws_connect(session_token)
    for _ in range(6):
        await socket.send_to(text_data="{not json")
    for _ in range(5):
        assert (await socket.receive_frame()).code == "invalid_input"  # type: ignore[attr-defined]
    await socket.expect_close(protocol.CLOSE_RATE_LIMITED)


async def test_sockets_per_account_are_capped_4429(
        ws_connect, session_token: str, settings) -> None:
    settings.SONOR_WS_MAX_SOCKETS_PER_USER = 2
    first = await ws_connect(session_token, ready=True)
    await ws_connect(session_token, ready=True)
    third = await ws_connect(session_token)
    await third.expect_close(protocol.CLOSE_RATE_LIMITED)
    # Closing one frees its place.
    await first.disconnect()
    await ws_connect(session_token, ready=True)


async def test_sockets_per_address_are_capped_4429(
        ws_connect, citizen: User, make_citizen, make_token, settings) -> None:
    settings.SONOR_WS_MAX_SOCKETS_PER_ADDRESS = 1
    other = await database_sync_to_async(make_citizen)()
    await ws_connect(await database_sync_to_async(make_token)(citizen), ready=True)
    second = await ws_connect(await database_sync_to_async(make_token)(other))
    await second.expect_close(protocol.CLOSE_RATE_LIMITED)


@database_sync_to_async
def revoke_behind_the_layers_back(user: User) -> None:
    """End the user's sessions in the database only: no session.revoke is ever published."""
    from identity.models import DeviceSession

    DeviceSession.objects.filter(user=user).update(revoked_at=timezone.now(),
                                                   revoke_reason="logout")


async def test_a_revocation_the_layer_never_delivered_still_closes_the_socket(
        ws_connect, citizen: User, make_token, settings) -> None:
    settings.SONOR_WS_SESSION_RECHECK = 0.2
    token = await database_sync_to_async(make_token)(citizen)
    socket = await ws_connect(token, ready=True)
    await revoke_behind_the_layers_back(citizen)
    assert await socket.receive_frame() == protocol.SessionRevoked(reason="logout")
    await socket.expect_close(protocol.CLOSE_UNAUTHENTICATED)


async def test_a_session_ended_while_its_socket_was_connecting_is_caught_at_once(
        ws_connect, citizen: User, make_token, settings) -> None:
    """The socket authenticates, then joins its groups: a revocation published in between
    is not heard. The check of fresh sockets catches it, long before the periodic one."""
    settings.SONOR_WS_SESSION_RECHECK = 3600
    settings.SONOR_WS_FRESH_RECHECK = 1.0
    token = await database_sync_to_async(make_token)(citizen)
    socket = await ws_connect(token, ready=True)
    await revoke_behind_the_layers_back(citizen)
    assert await socket.receive_frame() == protocol.SessionRevoked(reason="logout")
    await socket.expect_close(protocol.CLOSE_UNAUTHENTICATED)


# ---- live inbox events ---------------------------------------------------------------------

async def test_notify_read_marks_read_and_every_socket_gets_the_unread_count(
        ws_connect, citizen: User, make_token) -> None:
    token_for = database_sync_to_async(make_token)
    first, second, third = [await notify(citizen, title=f"n{i}") for i in range(3)]
    phone_socket = await ws_connect(await token_for(citizen, "phone"), ready=True)
    web_socket = await ws_connect(await token_for(citizen, "web"), ready=True)

    await phone_socket.send_json_to(
        {"type": "notify.read", "id": "read1", "ids": [first.pk, second.pk]})
    frames = await phone_socket.receive_frames(2)
    assert protocol.Ack(id="read1") in frames
    assert protocol.NotifyUnread(count=1) in frames
    assert await web_socket.receive_frame() == protocol.NotifyUnread(count=1)

    read = await database_sync_to_async(lambda: set(
        Notification.objects.filter(user=citizen, read_at__isnull=False)
        .values_list("pk", flat=True)))()
    assert read == {first.pk, second.pk}
    assert await phone_socket.receive_nothing(timeout=0.2)
    assert await web_socket.receive_nothing(timeout=0.1)


async def test_notify_read_of_someone_elses_notification_changes_nothing(
        ws_connect, citizen: User, make_citizen, make_token) -> None:
    other = await database_sync_to_async(make_citizen)()
    theirs = await notify(other)
    socket = await ws_connect(await database_sync_to_async(make_token)(citizen), ready=True)
    assert await socket.request(
        {"type": "notify.read", "id": "x", "ids": [theirs.pk]}) == protocol.Ack(id="x")
    assert await socket.receive_nothing(timeout=0.2)
    await database_sync_to_async(theirs.refresh_from_db)()
    assert theirs.read_at is None


async def test_new_notification_is_pushed_to_every_socket_of_its_user_only(
        ws_connect, citizen: User, make_citizen, make_token) -> None:
    token_for = database_sync_to_async(make_token)
    other = await database_sync_to_async(make_citizen)()
    phone_socket = await ws_connect(await token_for(citizen, "phone"), ready=True)
    web_socket = await ws_connect(await token_for(citizen, "web"), ready=True)
    other_socket = await ws_connect(await token_for(other), ready=True)

    created = await notify(citizen, title="Төлбөр", category="payment")
    for socket in (phone_socket, web_socket):
        new, unread = await socket.receive_frames(2)
        assert isinstance(new, protocol.NotifyNew)
        assert (new.id, new.seq, new.category, new.title) == (created.pk, 1, "payment", "Төлбөр")
        assert new.link == "https://e-mongolia.mn/requests/1"
        assert unread == protocol.NotifyUnread(count=1)
    assert await other_socket.receive_nothing(timeout=0.3)
