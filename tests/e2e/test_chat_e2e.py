"""National chat end to end: real daphne processes sharing the database (and Redis, when
REDIS_URL is set), driven by the `websockets` client. Every frame is validated against its
protocol model."""

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from websockets.asyncio.client import ClientConnection, connect

from chatserver.chat import messages as chat_messages
from chatserver.chat.models import RoomEvent
from chatserver.core import protocol
from identity.services import _phone_bind, citizen_create, session_create
from tests.chatserver import chat_helpers
from tests.e2e.conftest import LiveServer, frame_of, receive

pytestmark = pytest.mark.e2e
# Send-rate windows live in the cache (Redis, shared with the servers) and ids repeat.
fresh_cache = chat_helpers.fresh_cache

async def until_quiet(ws: ClientConnection, quiet: float = 0.5) -> list[Any]:
    frames = []
    while True:
        try:
            frames.append(frame_of(await asyncio.wait_for(ws.recv(), timeout=quiet)))
        except TimeoutError:
            return frames


async def open_socket(server: LiveServer, token: str, rooms: dict[int, int]
                      ) -> tuple[ClientConnection, list[Any]]:
    """A device socket after hello: returns it with the events that followed `welcome`."""
    ws = await connect(f"{server.ws_url}/ws/v1",
                       additional_headers={"Authorization": f"Bearer {token}"},
                       max_size=2**22)
    await ws.send(json.dumps({"type": "hello", "id": "h",
                              "resume": {"rooms": {str(k): v for k, v in rooms.items()}}}))
    welcome = await receive(ws)
    assert isinstance(welcome, protocol.Welcome) and welcome.resync == []
    return ws, await until_quiet(ws)


@pytest.fixture
def chat_pair(transactional_db: None) -> dict[str, Any]:
    """Two verified citizens with a direct room (seq 2: both joins), and a token each."""
    from django.db import transaction
    from django.utils import timezone

    ana = citizen_create(register_number="УБ99011512", name="Ану")
    bold = citizen_create(register_number="УБ98021534", name="Болд")
    with transaction.atomic():
        _phone_bind(user=ana, e164="+97691100001", now=timezone.now())
        _phone_bind(user=bold, e164="+97691100002", now=timezone.now())
    room = chat_helpers.direct_room(ana, bold)  # Ana asks, Bold accepts
    return {"ana": ana, "bold": bold, "room": room,
            "ana_token": session_create(user=ana, login_method="test")[1],
            "bold_token": session_create(user=bold, login_method="test")[1]}


async def chat_scenario(sender_server: LiveServer, receiver_server: LiveServer,
                        pair: dict[str, Any]) -> None:
    room_id = pair["room"].pk
    bold_ws, missed = await open_socket(receiver_server, pair["bold_token"], {room_id: 2})
    assert missed == []
    ana_ws, _ = await open_socket(sender_server, pair["ana_token"], {room_id: 2})

    # A message sent through one server reaches the member connected to the other.
    send = {"type": "chat.send", "id": "s1", "room": room_id, "client_msg_id": "live-1",
            "text": "Сайн уу, Болд!"}
    await ana_ws.send(json.dumps(send))
    own = [await receive(ana_ws), await receive(ana_ws)]
    ack = next(f for f in own if isinstance(f, protocol.Ack))
    assert (ack.id, ack.seq) == ("s1", 3) and ack.message_id
    delivered = await receive(bold_ws)
    assert isinstance(delivered, protocol.ChatMessage)
    assert (delivered.room, delivered.seq, delivered.id, delivered.sender, delivered.text) == (
        room_id, 3, ack.message_id, pair["ana"].pk, "Сайн уу, Болд!")

    # A resend with the same client_msg_id: same seq back, no duplicate anywhere.
    await ana_ws.send(json.dumps({**send, "id": "s2"}))
    resent = await receive(ana_ws)
    assert resent == protocol.Ack(id="s2", seq=3, message_id=ack.message_id)
    assert await until_quiet(bold_ws) == []
    assert await sync_to_async(
        RoomEvent.objects.filter(room_id=room_id, client_msg_id="live-1").count)() == 1

    # Bold goes offline; 50 messages, one edit and one deletion happen meanwhile.
    await bold_ws.close()

    def while_offline() -> list[RoomEvent]:
        sent = [chat_messages.message_send(sender=pair["ana"], room_id=room_id,
                                           client_msg_id=f"off-{i}", text=f"мессеж {i}")
                for i in range(50)]
        chat_messages.message_edit(user=pair["ana"], room_id=room_id, message_id=sent[7].pk,  # type: ignore[union-attr]
                                   text="засварласан")
        chat_messages.message_delete(user=pair["ana"], room_id=room_id, message_id=sent[9].pk)  # type: ignore[union-attr]
        return sent  # type: ignore[return-value]

    sent = await sync_to_async(while_offline)()
    bold_ws, missed = await open_socket(receiver_server, pair["bold_token"], {room_id: 3})
    assert [f.seq for f in missed] == list(range(4, 56))
    messages, (edit, deletion) = missed[:50], missed[50:]
    assert all(isinstance(m, protocol.ChatMessage) for m in messages)
    assert [m.id for m in messages] == [m.pk for m in sent]
    assert messages[7].text == "засварласан" and messages[9].deleted and messages[9].text == ""
    assert isinstance(edit, protocol.ChatUpdated) and isinstance(deletion, protocol.ChatUpdated)
    assert (edit.message_id, edit.text, edit.deleted) == (sent[7].pk, "засварласан", False)
    assert (deletion.message_id, deletion.text, deletion.deleted) == (sent[9].pk, "", True)

    # Back online, Bold answers through his server and Ana gets it on hers. (Bold sends: the
    # burst above used up Ana's send rate, which the servers count together in Redis.)
    await until_quiet(ana_ws, 0.2)
    await bold_ws.send(json.dumps({**send, "id": "s3", "client_msg_id": "live-2",
                                   "text": "Ирлээ!"}))
    answer = [f for f in await until_quiet(bold_ws) if isinstance(f, protocol.Ack)]
    assert answer == [protocol.Ack(id="s3", seq=56, message_id=answer[0].message_id)]
    back = await receive(ana_ws)
    assert isinstance(back, protocol.ChatMessage)
    assert (back.seq, back.sender, back.text) == (56, pair["bold"].pk, "Ирлээ!")
    await ana_ws.close()
    await bold_ws.close()


@pytest.fixture
def fast_senders(settings: Any) -> None:
    # The offline messages are sent from this process, faster than a person may.
    settings.SONOR_CHAT_SEND_RATE = 10_000


@pytest.mark.skipif(not settings.REDIS_URL, reason="two processes need a shared channel layer")
async def test_two_servers_share_rooms_through_redis(
        live_server_factory: Callable[..., LiveServer], chat_pair: dict[str, Any],
        fast_senders: None) -> None:
    first, second = live_server_factory(), live_server_factory()
    await chat_scenario(first, second, chat_pair)


async def test_one_server_delivers_resumes_and_deduplicates(
        server: LiveServer, chat_pair: dict[str, Any], fast_senders: None) -> None:
    await chat_scenario(server, server, chat_pair)


async def test_held_invite_becomes_a_live_room_when_the_number_is_verified(
        server: LiveServer, chat_pair: dict[str, Any]) -> None:
    """Through the real verification flow on the server: the newcomer's socket is asked,
    and once they accept, the inviter's socket is told."""
    from notify.models import DevOutboxMessage
    from tests.e2e.test_foundation_e2e import http

    number = "+97691100003"
    status, held, _ = await http("POST", f"{server.url}/api/v1/rooms/direct",
                                 {"phone": number}, token=chat_pair["ana_token"])
    assert (status, held["status"], held["phone"]) == (202, "pending", number)
    ana_ws, _ = await open_socket(server, chat_pair["ana_token"], {chat_pair["room"].pk: 2})

    def newcomer_token() -> str:
        user = citizen_create(register_number="УБ97031545", name="Дорж")
        return session_create(user=user, login_method="test")[1]

    token = await sync_to_async(newcomer_token)()
    newcomer_ws, _ = await open_socket(server, token, {})
    status, _, _ = await http("POST", f"{server.url}/api/v1/phones", {"phone": number},
                              token=token)
    assert status == 202
    sms = await sync_to_async(lambda: DevOutboxMessage.objects.filter(
        address=number).latest("created_at").body)()
    code = next(word for word in sms.replace(".", " ").split() if word.isdigit())
    status, _, _ = await http("POST", f"{server.url}/api/v1/phones/verify",
                              {"phone": number, "code": code}, token=token)
    assert status == 200

    invitation = next(f for f in await until_quiet(newcomer_ws)
                      if isinstance(f, protocol.ChatInvitation))
    assert (invitation.id, invitation.kind, invitation.from_user, invitation.from_name) == (
        held["id"], "direct", chat_pair["ana"].pk, "Ану")
    assert await until_quiet(ana_ws) == []  # nothing until the newcomer says yes
    status, _, _ = await http("POST", f"{server.url}/api/v1/invitations/{held['id']}/accept",
                              {}, token=token)
    assert status == 200
    joined = [await receive(ana_ws), await receive(ana_ws)]
    assert [(f.seq, f.action, f.by) for f in joined] == [
        (1, "joined", chat_pair["ana"].pk), (2, "joined", chat_pair["ana"].pk)]
    status, rooms, _ = await http("GET", f"{server.url}/api/v1/rooms", token=token)
    assert status == 200 and [r["peer"]["name"] for r in rooms] == ["Ану"]  # type: ignore[index]
    await ana_ws.close()
    await newcomer_ws.close()
