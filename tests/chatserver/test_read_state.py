"""Read state: `chat.read` up to a seq, the same unread count on every device at once,
receipts to the other members (aggregate counts in large groups); typing indicators."""

import pytest
from channels.db import database_sync_to_async

from chatserver.chat import messages as chat_messages
from chatserver.chat import receipts as chat_receipts
from chatserver.chat import rooms as chat_rooms
from chatserver.chat.models import Membership, RoomEvent
from chatserver.chat.selectors import room_list
from chatserver.core import protocol
from tests.chatserver import chat_helpers
from tests.chatserver.chat_helpers import ack_of, direct_room, drain, group, send

pytestmark = pytest.mark.django_db
chat_user = chat_helpers.chat_user
fresh_cache = chat_helpers.fresh_cache


def unread(user, room) -> int:  # type: ignore[no-untyped-def]
    return next(r.unread for r in room_list(user=user) if r.id == room.pk)


def test_unread_is_others_messages_after_the_last_read_seq(chat_user) -> None:
    a, b = chat_user(), chat_user()
    room = direct_room(a, b)
    first = send(a, room)
    send(a, room)
    send(b, room)  # one's own messages are never unread
    gone = send(a, room)
    assert unread(b, room) == 3 and unread(a, room) == 1
    chat_messages.message_delete(user=a, room_id=room.pk, message_id=gone.pk)
    assert unread(b, room) == 2  # a deleted message is not unread
    assert chat_receipts.room_read(user=b, room_id=room.pk, seq=first.seq) == 1
    assert unread(b, room) == 1
    # Never backwards, and never past the head.
    assert chat_receipts.room_read(user=b, room_id=room.pk, seq=1) == 1
    assert chat_receipts.room_read(user=b, room_id=room.pk, seq=10_000) == 0
    head = room.events.order_by("-seq").first().seq  # type: ignore[union-attr]
    assert Membership.objects.get(room=room, user=b).last_read_seq == head


def test_membership_events_are_not_unread(chat_user) -> None:
    owner, a, b = chat_user(), chat_user(), chat_user()
    room = group(owner, a)
    chat_helpers.member_add(owner, room, b)
    chat_rooms.group_rename(actor=owner, room_id=room.pk, name="Өөр")
    assert unread(a, room) == 0 and unread(b, room) == 0


@pytest.mark.django_db(transaction=True)
async def test_reading_on_one_device_updates_the_others_and_tells_the_sender(
        ws_connect, make_token, chat_user) -> None:
    a, b = await database_sync_to_async(chat_user)(), await database_sync_to_async(chat_user)()
    room = await database_sync_to_async(direct_room)(a, b)
    phone = await ws_connect(await database_sync_to_async(make_token)(b, "phone"), ready=True)
    tablet = await ws_connect(await database_sync_to_async(make_token)(b, "tablet"), ready=True)
    sender = await ws_connect(await database_sync_to_async(make_token)(a), ready=True)
    for _ in range(3):
        await database_sync_to_async(send)(a, room)
    for socket in (phone, tablet, sender):
        await drain(socket)

    await phone.send_json_to({"type": "chat.read", "id": "r", "room": room.pk, "seq": 4})
    got = await drain(phone)
    assert ack_of(next(f for f in got if isinstance(f, protocol.Ack))).id == "r"
    unread_frame = protocol.ChatUnread(room=room.pk, count=1, last_read_seq=4)
    receipt = protocol.ChatReceipt(room=room.pk, user=b.pk, seq=4)
    assert unread_frame in got and receipt in got
    on_tablet = await drain(tablet)
    assert len(on_tablet) == 2 and unread_frame in on_tablet and receipt in on_tablet
    assert await drain(sender) == [receipt]  # the other member gets no unread count of b's

    # Reading up to an older seq changes nothing and tells no one.
    await phone.send_json_to({"type": "chat.read", "id": "r2", "room": room.pk, "seq": 3})
    assert await drain(phone) == [protocol.Ack(id="r2")]
    assert await tablet.receive_nothing(timeout=0.2)


@pytest.mark.django_db(transaction=True)
async def test_large_groups_get_aggregate_read_counts(ws_connect, make_token, chat_user,
                                                      settings) -> None:
    settings.SONOR_CHAT_RECEIPTS_AGGREGATE_ABOVE = 2
    settings.SONOR_CHAT_RECEIPTS_AGGREGATE_SECONDS = 60
    owner, a, b = [await database_sync_to_async(chat_user)() for _ in range(3)]
    room = await database_sync_to_async(group)(owner, a, b)
    message = await database_sync_to_async(send)(owner, room)
    watcher = await ws_connect(await database_sync_to_async(make_token)(owner), ready=True)
    await database_sync_to_async(chat_receipts.room_read)(user=a, room_id=room.pk, seq=message.seq)
    frames = await drain(watcher)
    assert frames == [protocol.ChatReceipts(room=room.pk, seq=message.seq, read_by=1,
                                            members=3)]
    # At most one aggregate per room per period: b's read is counted by the next one.
    await database_sync_to_async(chat_receipts.room_read)(user=b, room_id=room.pk, seq=message.seq)
    assert await watcher.receive_nothing(timeout=0.2)


# ---- typing --------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
async def test_typing_is_forwarded_throttled_and_never_stored(ws_connect, make_token,
                                                              chat_user, settings) -> None:
    settings.SONOR_CHAT_TYPING_INTERVAL = 60
    a, b = await database_sync_to_async(chat_user)(), await database_sync_to_async(chat_user)()
    room = await database_sync_to_async(direct_room)(a, b)
    typer = await ws_connect(await database_sync_to_async(make_token)(a), ready=True)
    other = await ws_connect(await database_sync_to_async(make_token)(b), ready=True)
    await typer.send_json_to({"type": "chat.typing", "id": "t1", "room": room.pk})
    typed = await other.receive_frame()
    assert typed == protocol.ChatTypingEvent(room=room.pk, user=a.pk)
    assert protocol.Ack(id="t1") in await drain(typer)
    await typer.send_json_to({"type": "chat.typing", "id": "t2", "room": room.pk})
    assert await drain(typer) == [protocol.Ack(id="t2")]
    assert await other.receive_nothing(timeout=0.2)  # throttled
    count = await database_sync_to_async(RoomEvent.objects.filter(room=room).count)()
    assert count == 2  # only the two joins: typing is never stored
