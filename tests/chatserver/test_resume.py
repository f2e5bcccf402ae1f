"""Resume: `hello` with the last seq per room returns exactly the missed events, in order,
including rooms the user was added to while offline; `resync` where the gap is too large."""

import pytest
from channels.db import database_sync_to_async

from chatserver.chat import messages as chat_messages
from chatserver.chat import rooms as chat_rooms
from chatserver.core import protocol
from tests.chatserver import chat_helpers
from tests.chatserver.chat_helpers import direct_room, group, phone_of, send, seqs

pytestmark = pytest.mark.django_db(transaction=True)
chat_user = chat_helpers.chat_user
fresh_cache = chat_helpers.fresh_cache


async def hello(socket, rooms: dict[int, int] | None = None, inbox: int | None = None,
                ) -> tuple[protocol.Welcome, list]:
    """Send hello; return the welcome and every event after it."""
    resume: dict = {"rooms": {str(k): v for k, v in (rooms or {}).items()}}
    if inbox is not None:
        resume["inbox"] = inbox
    await socket.send_json_to({"type": "hello", "id": "h", "resume": resume})
    welcome = await socket.receive_frame()
    assert isinstance(welcome, protocol.Welcome)
    return welcome, await chat_helpers.drain(socket)


async def offline_user_socket(ws_connect, make_token, user):
    return await ws_connect(await database_sync_to_async(make_token)(user))


async def test_offline_client_gets_exactly_the_50_messages_the_edit_and_the_deletion(
        ws_connect, make_token, chat_user, settings) -> None:
    settings.SONOR_CHAT_SEND_RATE = 1000

    def setup():  # type: ignore[no-untyped-def]
        a, b = chat_user("Ану"), chat_user("Болд")
        room = direct_room(a, b)
        sent = [send(a, room, f"мессеж {i}") for i in range(50)]  # seqs 3..52
        chat_messages.message_edit(user=a, room_id=room.pk, message_id=sent[10].pk, text="засвар")
        chat_messages.message_delete(user=a, room_id=room.pk, message_id=sent[20].pk)
        return a, b, room, sent

    a, b, room, sent = await database_sync_to_async(setup)()
    socket = await offline_user_socket(ws_connect, make_token, b)
    welcome, events = await hello(socket, rooms={room.pk: 2})
    assert welcome.resync == []
    assert [e.seq for e in events] == list(range(3, 55))
    messages = events[:50]
    assert all(isinstance(m, protocol.ChatMessage) for m in messages)
    assert [m.id for m in messages] == [m.pk for m in sent]
    # Messages come in their current state; the edit and the deletion follow as events.
    assert messages[10].text == "засвар" and messages[10].edited_at is not None
    assert messages[20].text == "" and messages[20].deleted
    assert messages[0].text == "мессеж 0"
    edit, deletion = events[50:]
    assert isinstance(edit, protocol.ChatUpdated) and isinstance(deletion, protocol.ChatUpdated)
    assert (edit.seq, edit.message_id, edit.text, edit.deleted) == (53, sent[10].pk, "засвар",
                                                                    False)
    assert (deletion.seq, deletion.message_id, deletion.text, deletion.deleted) == (
        54, sent[20].pk, "", True)


async def test_up_to_date_client_gets_nothing(ws_connect, make_token, chat_user) -> None:
    def setup():  # type: ignore[no-untyped-def]
        a, b = chat_user(), chat_user()
        room = direct_room(a, b)
        send(a, room)
        return b, room

    b, room = await database_sync_to_async(setup)()
    socket = await offline_user_socket(ws_connect, make_token, b)
    welcome, events = await hello(socket, rooms={room.pk: 3})
    assert (welcome.resync, events) == ([], [])


async def test_rooms_joined_while_offline_come_from_the_join(ws_connect, make_token,
                                                             chat_user) -> None:
    def setup():  # type: ignore[no-untyped-def]
        owner, me, other = chat_user(), chat_user(), chat_user()
        known = direct_room(owner, me)
        room = group(owner, other, name="Шинэ")
        send(owner, room, "before me")
        chat_rooms.group_member_add(actor=owner, room_id=room.pk, phone=phone_of(me))
        send(owner, room, "after me")
        direct_room(other, me)  # contacts: a group of other's is created with me in it
        fresh = group(other, me, name="Бас нэг")  # created with me in it: all of it
        return me, known, room, fresh

    me, known, room, fresh = await database_sync_to_async(setup)()
    socket = await offline_user_socket(ws_connect, make_token, me)
    welcome, events = await hello(socket, rooms={known.pk: 2})
    assert welcome.resync == []
    by_room: dict[int, list] = {}
    for event in events:
        by_room.setdefault(event.room, []).append(event)
    assert known.pk not in by_room
    joined, after = by_room[room.pk]
    assert isinstance(joined, protocol.ChatMember) and joined.user == me.pk
    assert (joined.seq, joined.action) == (5, "joined")
    assert isinstance(after, protocol.ChatMessage) and after.text == "after me"
    assert [type(e) for e in by_room[fresh.pk]] == [protocol.ChatRoomRenamed,
                                                   protocol.ChatMember, protocol.ChatMember]
    assert [e.seq for e in by_room[fresh.pk]] == [1, 2, 3]


async def test_gap_beyond_the_window_says_resync_for_that_room_only(
        ws_connect, make_token, chat_user, settings) -> None:
    settings.SONOR_RESUME_LIMIT = 5
    settings.SONOR_CHAT_SEND_RATE = 1000

    def setup():  # type: ignore[no-untyped-def]
        a, b = chat_user(), chat_user()
        busy = direct_room(a, b)
        quiet = group(a, b)
        for i in range(8):
            send(a, busy, f"{i}")
        send(a, quiet, "one")
        return b, busy, quiet

    b, busy, quiet = await database_sync_to_async(setup)()
    socket = await offline_user_socket(ws_connect, make_token, b)
    welcome, events = await hello(socket, rooms={busy.pk: 2, quiet.pk: 3})
    assert welcome.resync == [f"room:{busy.pk}"]
    assert [(e.room, e.seq) for e in events] == [(quiet.pk, 4)]
    # Exactly at the window is still answered.
    welcome, events = await hello(socket, rooms={busy.pk: 5, quiet.pk: 4})
    assert welcome.resync == [] and [e.seq for e in events] == [6, 7, 8, 9, 10]


async def test_one_hello_resumes_at_most_the_total_limit_and_names_the_rest(
        ws_connect, make_token, chat_user, settings) -> None:
    settings.SONOR_RESUME_TOTAL_LIMIT = 5
    settings.SONOR_CHAT_SEND_RATE = 1000

    def setup():  # type: ignore[no-untyped-def]
        a, b = chat_user(), chat_user()
        rooms = [group(a, b, name=f"g{i}") for i in range(3)]
        heads = {}
        for room in rooms:
            heads[room.pk] = seqs(room)[-1]
            for i in range(3):
                send(a, room, f"{i}")
        return b, rooms, heads

    b, rooms, heads = await database_sync_to_async(setup)()
    socket = await offline_user_socket(ws_connect, make_token, b)
    welcome, events = await hello(socket, rooms=heads)
    # 3 + 3 would pass 5: the first room is answered, the others are left to a reload.
    assert [(e.room, e.seq) for e in events] == [
        (rooms[0].pk, heads[rooms[0].pk] + i) for i in (1, 2, 3)]
    assert welcome.resync == [f"room:{room.pk}" for room in rooms[1:]]


async def test_removed_while_offline_gets_events_up_to_the_removal(
        ws_connect, make_token, chat_user) -> None:
    def setup():  # type: ignore[no-untyped-def]
        owner, me = chat_user(), chat_user()
        room = group(owner, me)
        send(owner, room, "last one I see")
        chat_rooms.group_member_remove(actor=owner, room_id=room.pk, user_id=me.pk)
        send(owner, room, "not for me")
        return me, room

    me, room = await database_sync_to_async(setup)()
    socket = await offline_user_socket(ws_connect, make_token, me)
    welcome, events = await hello(socket, rooms={room.pk: 3})
    assert welcome.resync == []
    assert [(type(e).__name__, e.seq) for e in events] == [("ChatMessage", 4),
                                                           ("ChatMember", 5)]
    assert events[1].action == "removed" and events[1].user == me.pk
    # Once the client has the removal, nothing more comes for that room.
    welcome, events = await hello(socket, rooms={room.pk: 5})
    assert (welcome.resync, events) == ([], [])


async def test_unknown_or_impossible_rooms_say_resync(ws_connect, make_token,
                                                      chat_user) -> None:
    def setup():  # type: ignore[no-untyped-def]
        a, b, c = chat_user(), chat_user(), chat_user()
        mine = direct_room(a, b)
        not_mine = direct_room(a, c)
        return b, mine, not_mine

    b, mine, not_mine = await database_sync_to_async(setup)()
    socket = await offline_user_socket(ws_connect, make_token, b)
    welcome, events = await hello(socket, rooms={mine.pk: 99, not_mine.pk: 0, 424242: 1})
    assert sorted(welcome.resync) == sorted([f"room:{mine.pk}", f"room:{not_mine.pk}",
                                             "room:424242"])
    assert events == []


async def test_resume_covers_inbox_and_rooms_together(ws_connect, make_token,
                                                      chat_user) -> None:
    from notify.inbox import notification_create
    from notify.selectors import inbox_seq

    def setup():  # type: ignore[no-untyped-def]
        a, b = chat_user(), chat_user()
        room = direct_room(a, b)  # b's inbox told b of a's message request
        seen = inbox_seq(user=b)
        notification_create(user=b, category="petition", title="Өргөдөл", body="x")
        send(a, room, "hi")
        return b, room, seen

    b, room, seen = await database_sync_to_async(setup)()
    socket = await offline_user_socket(ws_connect, make_token, b)
    welcome, events = await hello(socket, rooms={room.pk: 2}, inbox=seen)
    assert [type(e) for e in events] == [protocol.NotifyNew, protocol.ChatMessage]


async def test_live_events_and_resume_agree(ws_connect, make_token, chat_user) -> None:
    """What a connected client received live is what a later resume would have given it."""
    a, b = await database_sync_to_async(chat_user)(), await database_sync_to_async(chat_user)()
    room = await database_sync_to_async(direct_room)(a, b)
    socket = await ws_connect(await database_sync_to_async(make_token)(b), ready=True)
    await chat_helpers.drain(socket)
    message = await database_sync_to_async(send)(a, room, "live")
    await database_sync_to_async(chat_messages.message_edit)(
        user=a, room_id=room.pk, message_id=message.pk, text="edited")
    live = [await socket.receive_frame(), await socket.receive_frame()]
    other = await offline_user_socket(ws_connect, make_token, b)
    _, resumed = await hello(other, rooms={room.pk: 2})
    assert [e.seq for e in live] == [e.seq for e in resumed] == [3, 4]
    assert resumed[1] == live[1]
