"""Sends stored in batches (messages_send_batch, and the per-process MessageWriter that sockets
use): each request gets exactly what message_send would answer, seqs stay gap-free and in
arrival order per room, and a failed request changes nothing for the others."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from channels.db import database_sync_to_async
from prometheus_client import REGISTRY

from chatserver.chat import moderation as chat_moderation
from chatserver.chat.errors import NotMember, PiiWarning
from chatserver.chat.messages import SendOutcome, SendRequest, messages_send_batch
from chatserver.chat.models import RoomEvent
from chatserver.core import protocol
from chatserver.core.sql import KEYS_PER_STATEMENT
from tests.chatserver.chat_helpers import (
    agroup,
    chat_user,
    direct_room,
    group,
    in_thread,
    send,
    seqs,
)

pytestmark = pytest.mark.django_db(transaction=True)

__all__ = ["chat_user"]  # a fixture


def test_a_batch_answers_each_request_as_message_send_would(chat_user) -> None:
    a, b, outsider = chat_user(), chat_user(), chat_user()
    first, second = group(a, b), group(b, a)
    earlier = send(a, first, "earlier", client_msg_id="old")
    start_first, start_second = seqs(first)[-1], seqs(second)[-1]

    outcomes = messages_send_batch([
        SendRequest(sender=a, room_id=first.pk, client_msg_id="m1", text="нэг"),
        SendRequest(sender=b, room_id=second.pk, client_msg_id="m1", text="хоёр"),
        SendRequest(sender=b, room_id=first.pk, client_msg_id="m2", text="гурав"),
        SendRequest(sender=a, room_id=first.pk, client_msg_id="m1", text="нэг"),  # repeat
        SendRequest(sender=a, room_id=first.pk, client_msg_id="old", text="earlier"),
        SendRequest(sender=outsider, room_id=first.pk, client_msg_id="x", text="hi"),
        SendRequest(sender=a, room_id=first.pk, client_msg_id="p", text="РД: УБ99011512"),
    ])

    one, two, three, repeat, resend, refused, warned = outcomes
    assert isinstance(one, RoomEvent) and isinstance(two, RoomEvent)
    assert isinstance(three, RoomEvent)
    assert (one.seq, three.seq) == (start_first + 1, start_first + 2)  # arrival order
    assert two.seq == start_second + 1
    assert repeat is one
    assert isinstance(resend, RoomEvent) and resend.pk == earlier.pk
    assert isinstance(refused, NotMember)
    assert isinstance(warned, PiiWarning)
    # Stored exactly once each, nothing for the refused ones, no gap.
    assert seqs(first) == list(range(1, start_first + 3))
    texts = list(RoomEvent.objects.filter(room=first, seq__gt=start_first)
                 .order_by("seq").values_list("text", flat=True))
    assert texts == ["нэг", "гурав"]


def test_a_held_message_in_a_batch_is_not_stored_and_the_rest_are(chat_user) -> None:
    blocker, pest, friend = chat_user(), chat_user(), chat_user()
    held_room, open_room = direct_room(pest, blocker), direct_room(pest, friend)
    chat_moderation.user_block(blocker=blocker, user_id=pest.pk)
    before = seqs(held_room)

    held, sent = messages_send_batch([
        SendRequest(sender=pest, room_id=held_room.pk, client_msg_id="h", text="hi"),
        SendRequest(sender=pest, room_id=open_room.pk, client_msg_id="s", text="hi"),
    ])
    assert held is None
    assert isinstance(sent, RoomEvent) and sent.seq == seqs(open_room)[-1]
    assert seqs(held_room) == before


async def test_many_sockets_sending_at_once_are_all_acked_and_delivered_in_order(
        ws_connect, make_token, chat_user) -> None:
    users = [await database_sync_to_async(chat_user)() for _ in range(6)]
    room = await agroup(users[0], *users[1:])
    sockets = [await ws_connect(await database_sync_to_async(make_token)(u), ready=True)
               for u in users]
    head = (await database_sync_to_async(seqs)(room))[-1]
    for socket in sockets:  # up to date: no replay of the room's creation
        await socket.send_json_to({"type": "hello", "id": "h",
                                   "resume": {"rooms": {str(room.pk): head}}})
        assert isinstance(await socket.receive_frame(), protocol.Welcome)

    frames_out = REGISTRY.get_sample_value("sonor_frames_out_total") or 0
    per_socket = 5
    for n in range(per_socket):  # every socket's n-th send is in flight at the same time
        for i, socket in enumerate(sockets):
            await socket.send_json_to({"type": "chat.send", "id": f"s{i}-{n}", "room": room.pk,
                                       "client_msg_id": f"c{i}-{n}", "text": f"{i}/{n}"})

    total = per_socket * len(sockets)
    acked: set[int] = set()
    for i, socket in enumerate(sockets):
        frames = await socket.receive_frames(per_socket + total)
        acks = [f for f in frames if isinstance(f, protocol.Ack)]
        messages = [f for f in frames if isinstance(f, protocol.ChatMessage)]
        # Each socket gets its answers in the order it asked, each after its commit.
        assert [a.id for a in acks] == [f"s{i}-{n}" for n in range(per_socket)]
        acked.update(a.seq for a in acks if a.seq is not None)
        # Every member sees every message once, in seq order.
        assert [m.seq for m in messages] == sorted({m.seq for m in messages})
        assert len(messages) == total
    first = min(acked)
    assert acked == set(range(first, first + total))
    stored = await database_sync_to_async(lambda: RoomEvent.objects.filter(
        room=room, kind=RoomEvent.Kind.MESSAGE).count())()
    assert stored == total
    # Each frame is counted once as it goes out, acks written with the frames behind them
    # included (the counter is read after the writers' last step).
    sent = len(sockets) * (per_socket + total)
    for _ in range(200):
        if (REGISTRY.get_sample_value("sonor_frames_out_total") or 0) - frames_out >= sent:
            break
        await asyncio.sleep(0.01)
    assert (REGISTRY.get_sample_value("sonor_frames_out_total") or 0) - frames_out == sent


def test_concurrent_batches_over_the_same_rooms_store_everything_gap_free(
        chat_user, settings) -> None:
    """Several processes' writers at once (threads with their own connections here), each
    batch touching the same rooms in a different order: no deadlock, no gap, no loss."""
    settings.SONOR_CHAT_SEND_RATE = 1000
    users = [chat_user() for _ in range(4)]
    rooms = [group(users[0], *users[1:], name=f"g{i}") for i in range(3)]
    heads = [seqs(room)[-1] for room in rooms]
    barrier = threading.Barrier(4)

    def batch(n: int) -> list[SendOutcome]:
        order = rooms if n % 2 else rooms[::-1]
        requests = [SendRequest(sender=users[n], room_id=room.pk, client_msg_id=f"{n}-{i}",
                                text=f"{n}/{i}")
                    for i in range(5) for room in order]
        barrier.wait()
        return messages_send_batch(requests)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda n: in_thread(batch, n), range(4)))
    assert all(isinstance(outcome, RoomEvent) for outcomes in results for outcome in outcomes)
    for room, head in zip(rooms, heads, strict=True):
        assert seqs(room) == list(range(1, head + 4 * 5 + 1))


def test_a_batch_of_more_keys_than_one_statement_takes_is_answered_whole(chat_user) -> None:
    # The reads per key go in statements of KEYS_PER_STATEMENT keys (SQLite bounds an
    # expression's depth): a batch with more senders and ids than that is still read whole.
    pairs = [(chat_user(), chat_user()) for _ in range(KEYS_PER_STATEMENT // 2 + 5)]
    rooms = [direct_room(a, b) for a, b in pairs]
    last_a, last_b = pairs[-1]
    earlier = send(last_b, rooms[-1], "өмнөх", client_msg_id="same")

    outcomes = messages_send_batch([
        SendRequest(sender=user, room_id=room.pk, client_msg_id="same", text="сайн уу")
        for (a, b), room in zip(pairs, rooms, strict=True) for user in (a, b)])

    *new, resend = outcomes
    assert isinstance(resend, RoomEvent) and resend.pk == earlier.pk  # found past the first
    assert all(isinstance(event, RoomEvent) for event in new)  # every sender allowed
    assert len(new) > KEYS_PER_STATEMENT
    assert RoomEvent.objects.filter(client_msg_id="same").count() == len(new) + 1  # no repeat
