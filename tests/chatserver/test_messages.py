"""Messages: persisted before the ack, per-room gap-free seqs, idempotent resends, text rules,
edits, deletion for everyone, history in both directions. Socket frames are validated against
their protocol models by the DeviceSocket test client."""

import threading
import unicodedata
from concurrent.futures import ThreadPoolExecutor

import pytest
from channels.db import database_sync_to_async

from chatserver.chat import messages as chat_messages
from chatserver.chat.errors import (
    MessageDeleted,
    MessageNotFound,
    NotMember,
    NotYourMessage,
    TextControlCharacters,
    TextEmpty,
    TextTooLong,
)
from chatserver.chat.models import RoomEvent
from chatserver.chat.selectors import room_history
from chatserver.core import protocol
from tests.chatserver import chat_helpers
from tests.chatserver.chat_helpers import (
    ack_of,
    adirect_room,
    asend,
    direct_room,
    drain,
    error_of,
    group,
    in_thread,
    send,
    seqs,
)

pytestmark = pytest.mark.django_db
chat_user = chat_helpers.chat_user
fresh_cache = chat_helpers.fresh_cache


@pytest.fixture
async def pair(chat_user, make_token, ws_connect):
    """Two citizens in a direct room, each with a ready socket; the room's join frames
    already drained."""
    a = await database_sync_to_async(chat_user)("Ану")
    b = await database_sync_to_async(chat_user)("Болд")
    room = await adirect_room(a, b)
    socket_a = await ws_connect(await database_sync_to_async(make_token)(a), ready=True)
    socket_b = await ws_connect(await database_sync_to_async(make_token)(b), ready=True)
    return a, b, room, socket_a, socket_b


# ---- sending over the socket ---------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
async def test_send_is_stored_before_the_ack_and_reaches_every_member(pair) -> None:
    a, b, room, socket_a, socket_b = pair
    await socket_a.send_json_to({"type": "chat.send", "id": "s1", "room": room.pk,
                                 "client_msg_id": "m-1", "text": "Сайн байна уу?"})
    frames = [await socket_a.receive_frame(), await socket_a.receive_frame()]
    ack = next(f for f in frames if isinstance(f, protocol.Ack))
    assert (ack.id, ack.seq) == ("s1", 3)
    stored = await database_sync_to_async(RoomEvent.objects.get)(pk=ack.message_id)
    assert (stored.seq, stored.text, stored.sender_id, stored.client_msg_id) == (
        3, "Сайн байна уу?", a.pk, "m-1")
    message = await socket_b.receive_frame()
    assert message == protocol.ChatMessage(
        room=room.pk, seq=3, id=stored.pk, sender=a.pk, text="Сайн байна уу?",
        sent_at=stored.created_at, client_msg_id="m-1")
    # The sender's own socket gets the same event (its other devices too).
    assert message in frames


@pytest.mark.django_db(transaction=True)
async def test_resend_with_the_same_client_msg_id_returns_the_same_seq_and_stores_once(
        pair) -> None:
    a, b, room, socket_a, socket_b = pair
    frame = {"type": "chat.send", "id": "s1", "room": room.pk, "client_msg_id": "dup",
             "text": "нэг"}
    await socket_a.send_json_to(frame)
    first = ack_of(next(f for f in await drain(socket_a) if isinstance(f, protocol.Ack)))
    assert isinstance(await socket_b.receive_frame(), protocol.ChatMessage)
    await socket_a.send_json_to({**frame, "id": "s2"})
    second = ack_of(await socket_a.receive_frame())
    assert (second.id, second.seq, second.message_id) == ("s2", first.seq, first.message_id)
    assert await database_sync_to_async(
        RoomEvent.objects.filter(room=room, client_msg_id="dup").count)() == 1
    assert await aseqs_list(room) == [1, 2, 3]
    assert await socket_b.receive_nothing(timeout=0.2)  # nothing published twice


aseqs_list = database_sync_to_async(seqs)


@pytest.mark.django_db(transaction=True)
async def test_client_msg_id_is_per_sender(pair) -> None:
    a, b, room, socket_a, socket_b = pair
    first = await asend(a, room, "a", client_msg_id="same")
    second = await asend(b, room, "b", client_msg_id="same")
    assert (first.seq, second.seq) == (3, 4)


@pytest.mark.django_db(transaction=True)
async def test_non_member_gets_not_member(pair, chat_user, make_token, ws_connect) -> None:
    _, _, room, _, _ = pair
    outsider = await database_sync_to_async(chat_user)()
    socket = await ws_connect(await database_sync_to_async(make_token)(outsider), ready=True)
    for frame in (
        {"type": "chat.send", "id": "x", "room": room.pk, "client_msg_id": "c", "text": "hi"},
        {"type": "chat.history", "id": "x", "room": room.pk},
        {"type": "chat.read", "id": "x", "room": room.pk, "seq": 1},
        {"type": "chat.typing", "id": "x", "room": room.pk},
        {"type": "chat.send", "id": "x", "room": 999_999, "client_msg_id": "c", "text": "hi"},
    ):
        error = error_of(await socket.request(frame), "not_member")
        assert error.id == "x"


@pytest.mark.django_db(transaction=True)
async def test_invalid_text_is_refused_with_a_stable_code(pair) -> None:
    a, _, room, socket_a, _ = pair
    cases = {"   \n\t ": "text_empty", "a\x00b": "text_control_characters",
             "bell\x07": "text_control_characters", "x" * 4097: "text_too_long"}
    for text, code in cases.items():
        error = await socket_a.request({"type": "chat.send", "id": "t", "room": room.pk,
                                        "client_msg_id": "c", "text": text})
        error_of(error, code)
    assert await aseqs_list(room) == [1, 2]


# ---- text rules (service) ------------------------------------------------------------------

def test_text_is_nfc_normalised_and_length_counted_after(chat_user) -> None:
    a, b = chat_user(), chat_user()
    room = direct_room(a, b)
    decomposed = unicodedata.normalize("NFD", "Ёлка")
    assert len(decomposed) == 5
    event = send(a, room, decomposed)
    assert event.text == "Ёлка" and unicodedata.is_normalized("NFC", event.text)
    # 4,096 composed characters arrive as 8,192 code points: accepted, stored as 4,096.
    long_text = unicodedata.normalize("NFD", "é" * 4096)
    assert len(long_text) == 8192
    assert len(send(a, room, long_text).text) == 4096
    with pytest.raises(TextTooLong):
        send(a, room, "é" * 4097)


def test_newline_and_tab_are_allowed_other_controls_are_not(chat_user) -> None:
    a, b = chat_user(), chat_user()
    room = direct_room(a, b)
    assert send(a, room, "мөр 1\n\tмөр 2").text == "мөр 1\n\tмөр 2"
    assert send(a, room, "windows\r\nline").text == "windows\nline"
    for bad in ("\r", "\x1b[31m", "\x7f", "\u0085", "\ud800"):
        with pytest.raises(TextControlCharacters):
            send(a, room, f"x{bad}y")
    for empty in ("", " ", "\n\n", "\u3000"):
        with pytest.raises(TextEmpty):
            send(a, room, empty)
    # Emoji with zero-width joiners are format characters, not controls.
    assert send(a, room, "👩‍👩‍👧").text == "👩‍👩‍👧"


# ---- edit and delete -----------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
async def test_edit_own_message_reaches_everyone_as_chat_updated(pair) -> None:
    a, b, room, socket_a, socket_b = pair
    message = await asend(a, room, "анхны")
    await drain(socket_b)
    await drain(socket_a)
    await socket_a.send_json_to({"type": "chat.edit", "id": "e", "room": room.pk,
                                 "message_id": message.pk, "text": "засварласан"})
    reply = ack_of(next(f for f in await drain(socket_a) if isinstance(f, protocol.Ack)))
    updated = await socket_b.receive_frame()
    assert isinstance(updated, protocol.ChatUpdated)
    assert (updated.seq, updated.message_id, updated.text, updated.deleted, updated.by) == (
        4, message.pk, "засварласан", False, a.pk)
    assert updated.edited_at is not None
    assert reply.seq == 4
    await database_sync_to_async(message.refresh_from_db)()
    assert (message.text, message.edited_at) == ("засварласан", updated.edited_at)
    # Someone else's message cannot be edited.
    error_of(await socket_b.request({"type": "chat.edit", "id": "e2", "room": room.pk,
                                     "message_id": message.pk, "text": "миний"}),
             "not_your_message")


def test_edit_rules(chat_user) -> None:
    a, b, c = chat_user(), chat_user(), chat_user()
    room = group(a, b)
    other = group(a, c)
    message = send(a, room)
    with pytest.raises(NotYourMessage):
        chat_messages.message_edit(user=b, room_id=room.pk, message_id=message.pk, text="x")
    with pytest.raises(MessageNotFound):  # a message of another room
        chat_messages.message_edit(user=a, room_id=other.pk, message_id=message.pk, text="x")
    chat_messages.message_delete(user=a, room_id=room.pk, message_id=message.pk)
    with pytest.raises(MessageDeleted):
        chat_messages.message_edit(user=a, room_id=room.pk, message_id=message.pk, text="x")
    with pytest.raises(NotMember):
        chat_messages.message_edit(user=c, room_id=room.pk, message_id=message.pk, text="x")


@pytest.mark.django_db(transaction=True)
async def test_delete_for_everyone_leaves_a_tombstone_and_removes_the_text(pair) -> None:
    a, b, room, socket_a, socket_b = pair
    message = await asend(a, room, "нууц")
    await database_sync_to_async(chat_messages.message_edit)(
        user=a, room_id=room.pk, message_id=message.pk, text="илүү нууц")
    await drain(socket_b)
    await drain(socket_a)
    await socket_a.send_json_to({"type": "chat.delete", "id": "d", "room": room.pk,
                                 "message_id": message.pk})
    own = await drain(socket_a)  # the ack and the event, in either order
    assert {type(f) for f in own} == {protocol.Ack, protocol.ChatUpdated}
    deleted = await socket_b.receive_frame()
    assert isinstance(deleted, protocol.ChatUpdated)
    assert (deleted.seq, deleted.message_id, deleted.text, deleted.deleted) == (
        5, message.pk, "", True)

    rows = await database_sync_to_async(lambda: list(
        RoomEvent.objects.filter(room=room).order_by("seq").values_list(
            "seq", "kind", "text", "deleted_at")))()
    assert [(seq, kind, text) for seq, kind, text, _ in rows[2:]] == [
        (3, "message", ""), (4, "edit", ""), (5, "delete", "")]
    assert rows[2][3] is not None
    all_text = await database_sync_to_async(lambda: list(
        RoomEvent.objects.values_list("text", flat=True)))()
    assert not any("нууц" in text for text in all_text)

    page = await socket_b.request({"type": "chat.history", "id": "h", "room": room.pk})
    assert isinstance(page, protocol.ChatHistory)
    tombstone = page.messages[2]
    assert isinstance(tombstone, protocol.ChatMessage)
    assert (tombstone.id, tombstone.text, tombstone.deleted, tombstone.sender) == (
        message.pk, "", True, a.pk)
    # Deleting again answers with the first deletion; only the sender may delete here.
    again = ack_of(await socket_a.request({"type": "chat.delete", "id": "d2", "room": room.pk,
                                           "message_id": message.pk}))
    assert again.seq == 5
    other = await asend(a, room, "x")
    await drain(socket_b)
    error_of(await socket_b.request({"type": "chat.delete", "id": "d3", "room": room.pk,
                                     "message_id": other.pk}), "not_your_message")


def test_group_admins_may_delete_any_message(chat_user) -> None:
    owner, member = chat_user(), chat_user()
    room = group(owner, member)
    message = send(member, room, "спам")
    chat_messages.message_delete(user=owner, room_id=room.pk, message_id=message.pk)
    message.refresh_from_db()
    assert message.deleted_at is not None and message.text == ""


# ---- history -------------------------------------------------------------------------------

def test_history_pages_by_seq_in_both_directions(chat_user, settings) -> None:
    a, b = chat_user(), chat_user()
    room = direct_room(a, b)
    for i in range(10):
        send(a, room, f"m{i}")  # seqs 3..12
    newest = room_history(user=b, room_id=room.pk, limit=4)
    assert [e.seq for e in newest.events] == [9, 10, 11, 12] and newest.has_more
    older = room_history(user=b, room_id=room.pk, before_seq=9, limit=4)
    assert [e.seq for e in older.events] == [5, 6, 7, 8] and older.has_more
    oldest = room_history(user=b, room_id=room.pk, before_seq=5, limit=4)
    assert [e.seq for e in oldest.events] == [1, 2, 3, 4] and not oldest.has_more
    forward = room_history(user=b, room_id=room.pk, after_seq=2, limit=5)
    assert [e.seq for e in forward.events] == [3, 4, 5, 6, 7] and forward.has_more
    tail = room_history(user=b, room_id=room.pk, after_seq=10, limit=5)
    assert [e.seq for e in tail.events] == [11, 12] and not tail.has_more
    assert room_history(user=b, room_id=room.pk, after_seq=12).events == []
    settings.SONOR_CHAT_HISTORY_MAX = 3
    assert len(room_history(user=b, room_id=room.pk, limit=100).events) == 3


def test_history_shows_nothing_from_before_one_joined(chat_user) -> None:
    owner, early, late = chat_user(), chat_user(), chat_user()
    room = group(owner, early)
    send(owner, room, "before")
    chat_helpers.member_add(owner, room, late)
    send(owner, room, "after")
    page = room_history(user=late, room_id=room.pk, before_seq=100)
    assert [type(e).__name__ for e in page.events] == ["ChatMember", "ChatMessage"]
    assert not page.has_more
    assert room_history(user=late, room_id=room.pk, after_seq=0).events == page.events


@pytest.mark.django_db(transaction=True)
async def test_history_over_the_socket_validates_limit(pair) -> None:
    _, _, room, socket_a, _ = pair
    error_of(await socket_a.request({"type": "chat.history", "id": "h", "room": room.pk,
                                     "limit": 500}), "invalid_input")
    page = await socket_a.request({"type": "chat.history", "id": "h", "room": room.pk,
                                   "limit": 1})
    assert isinstance(page, protocol.ChatHistory)
    assert [m.seq for m in page.messages] == [2] and page.has_more


# ---- concurrency ---------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_concurrent_senders_get_gap_free_strictly_increasing_seqs(chat_user, settings) -> None:
    settings.SONOR_CHAT_SEND_RATE = 1000
    users = [chat_user() for _ in range(4)]
    room = group(users[0], *users[1:])
    per_user = 8

    def burst(user):  # type: ignore[no-untyped-def]
        return [send(user, room, f"{user.pk}-{i}").seq for i in range(per_user)]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda u: in_thread(burst, u), users))
    for own in results:
        assert own == sorted(own)  # each sender's messages in the order sent
    assert seqs(room) == list(range(1, 5 + 4 * per_user + 1))


@pytest.mark.django_db(transaction=True)
def test_concurrent_resends_store_one_row(chat_user) -> None:
    a, b = chat_user(), chat_user()
    room = direct_room(a, b)
    barrier = threading.Barrier(4)

    def resend():  # type: ignore[no-untyped-def]
        barrier.wait()
        return send(a, room, "once", client_msg_id="same").seq

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: in_thread(resend), range(4)))
    assert got == [3, 3, 3, 3]
    assert seqs(room) == [1, 2, 3]

