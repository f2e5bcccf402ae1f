"""Control characters in the strings a citizen sends that are stored (message ids, report
reasons, device tokens and names): refused at the edge with `invalid_input`, nothing stored
(PostgreSQL refuses NUL in text, and no reader wants the others). A value the edge lets
through that the database still refuses fails only its own request, never its batch."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.test import Client

from chatserver.chat.messages import SendRequest
from chatserver.chat.models import Report, RoomEvent
from chatserver.core import protocol
from chatserver.core.errors import InvalidInput
from chatserver.sockets.message_writer import message_writer
from notify.inbox import notification_create
from notify.models import Device
from tests.chatserver import chat_helpers
from tests.chatserver.chat_helpers import agroup, group, send, seqs
from tests.conftest import JsonClient

pytestmark = pytest.mark.django_db(transaction=True)
chat_user = chat_helpers.chat_user


def client_of(token: str) -> JsonClient:
    client = JsonClient(token)
    client.client = Client(raise_request_exception=False)  # a 500 is an answer, not a raise
    return client


@pytest.mark.parametrize("value", ["m\x00", "m\x1f", "\x7fm"])
def test_a_message_id_with_a_control_character_is_refused(chat_user, make_token,
                                                          value: str) -> None:
    a, b = chat_user(), chat_user()
    room = group(a, b)
    before = seqs(room)
    response = client_of(make_token(a)).post(f"/api/v1/rooms/{room.pk}/messages",
                                             {"client_msg_id": value, "text": "Сайн уу"})
    assert response.status_code == 422, response.content
    assert response.json()["code"] == "invalid_input"
    assert seqs(room) == before


def test_report_reasons_with_control_characters_are_refused(chat_user, make_token) -> None:
    a, b = chat_user(), chat_user()
    message = send(b, group(a, b), "хог")
    notice = notification_create(user=a, category="system", title="Засвар", body="Засвар.")
    client = client_of(make_token(a))
    for path, body in [
        ("/api/v1/reports", {"message_id": message.pk, "reason": "спам\x00"}),
        ("/api/v1/reports", {"user_id": b.pk, "reason": "\x1b[2Jспам"}),
        (f"/api/v1/inbox/{notice.pk}/report", {"reason": "надад биш\x00"}),
    ]:
        response = client.post(path, body)
        assert response.status_code == 422, (path, response.content)
        assert response.json()["code"] == "invalid_input"
    assert not Report.objects.exists()
    notice.refresh_from_db()
    assert notice.reported_at is None
    # Newline and tab are text: a reason may have them.
    response = client.post("/api/v1/reports",
                           {"message_id": message.pk, "reason": "спам\n\tдахин дахин"})
    assert response.status_code == 201, response.content


@pytest.mark.parametrize("device", [
    {"token": "fcm-token-" + "x" * 20 + "\x00", "platform": "android"},
    {"token": "fcm-token-" + "x" * 20, "platform": "android", "name": "Pixel\x00"},
])
def test_devices_with_control_characters_are_refused(citizen, session_token,
                                                     device: dict[str, str]) -> None:
    response = client_of(session_token).post("/api/v1/devices", device)
    assert response.status_code == 422, response.content
    assert response.json()["code"] == "invalid_input"
    assert not Device.objects.exists()


async def test_a_socket_message_id_with_a_control_character_is_refused(
        ws_connect, make_token, chat_user) -> None:
    a, b = [await database_sync_to_async(chat_user)() for _ in range(2)]
    room = await agroup(a, b)
    socket = await ws_connect(await database_sync_to_async(make_token)(a), ready=True)
    before = await database_sync_to_async(seqs)(room)
    answer = await socket.request({"type": "chat.send", "id": "s1", "room": room.pk,
                                   "client_msg_id": "m\x00", "text": "Сайн уу"})
    assert isinstance(answer, protocol.ErrorFrame) and answer.code == "invalid_input", answer
    assert await database_sync_to_async(seqs)(room) == before
    # The socket goes on: the next send is stored.
    ack = await socket.request({"type": "chat.send", "id": "s2", "room": room.pk,
                                "client_msg_id": "m1", "text": "Сайн уу"})
    assert isinstance(ack, protocol.Ack) and ack.seq == before[-1] + 1, ack


@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="SQLite stores any text: it refuses no value of a chat send")
async def test_a_value_the_database_refuses_fails_only_its_own_request(chat_user) -> None:
    a, b = [await database_sync_to_async(chat_user)() for _ in range(2)]
    room = await agroup(a, b)
    head = (await database_sync_to_async(seqs)(room))[-1]
    writer = message_writer()
    # Past the edge's check (a caller that builds requests itself): one batch of three.
    first, refused, last = await asyncio.gather(*(
        writer.send(SendRequest(sender=sender, room_id=room.pk, client_msg_id=msg_id,
                                text="Сайн уу"))
        for sender, msg_id in [(a, "ok-1"), (b, "bad\x00"), (b, "ok-2")]), return_exceptions=True)
    assert isinstance(refused, InvalidInput), refused
    assert isinstance(first, RoomEvent) and isinstance(last, RoomEvent), (first, last)
    assert (first.seq, last.seq) == (head + 1, head + 2)
    stored = await database_sync_to_async(lambda: list(
        RoomEvent.objects.filter(room=room, seq__gt=head).values_list("client_msg_id",
                                                                       flat=True)))()
    assert sorted(stored) == ["ok-1", "ok-2"]
