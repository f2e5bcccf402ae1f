"""Abuse (terms 3.4): per-user send rate, few new conversations for new accounts, blocking
(the blocked user is not told), reports to a staff queue that keeps the reported text."""

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from chatserver.chat import invites as chat_invites
from chatserver.chat import messages as chat_messages
from chatserver.chat import moderation as chat_moderation
from chatserver.chat import rooms as chat_rooms
from chatserver.chat.errors import (
    DirectRoomsLimit,
    InviteNotFound,
    MessageNotFound,
    ReportInvalid,
    UserBlocked,
)
from chatserver.chat.models import PendingInvite, Report, Room, RoomEvent
from chatserver.chat.selectors import invitation_list
from chatserver.core import protocol
from chatserver.core.errors import RateLimited
from identity.models import User
from tests.chatserver import chat_helpers
from tests.chatserver.chat_helpers import (
    direct_room,
    drain,
    error_of,
    group,
    new_phone,
    phone_of,
    send,
)

pytestmark = pytest.mark.django_db
chat_user = chat_helpers.chat_user
fresh_cache = chat_helpers.fresh_cache


def age(user: User, days: int) -> User:
    User.objects.filter(pk=user.pk).update(created_at=timezone.now() - timedelta(days=days))
    user.refresh_from_db()
    return user


# ---- send rate -----------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
async def test_send_rate_is_limited_per_user_with_retry_after(ws_connect, make_token,
                                                              chat_user, settings) -> None:
    settings.SONOR_CHAT_SEND_RATE = 3
    settings.SONOR_CHAT_SEND_WINDOW = 60
    a, b = await database_sync_to_async(chat_user)(), await database_sync_to_async(chat_user)()
    room = await database_sync_to_async(direct_room)(a, b)
    socket = await ws_connect(await database_sync_to_async(make_token)(a), ready=True)
    for i in range(3):
        await socket.send_json_to({"type": "chat.send", "id": f"s{i}", "room": room.pk,
                                   "client_msg_id": f"m{i}", "text": "hi"})
    await drain(socket)
    refused = error_of(await socket.request({"type": "chat.send", "id": "s3", "room": room.pk,
                                             "client_msg_id": "m3", "text": "hi"}),
                       "rate_limited")
    assert refused.id == "s3" and 0 < refused.extra["retry_after"] <= 60  # type: ignore[operator]
    # A resend of a stored message is still answered: it costs nothing.
    again = await socket.request({"type": "chat.send", "id": "s4", "room": room.pk,
                                  "client_msg_id": "m0", "text": "hi"})
    assert isinstance(again, protocol.Ack) and again.seq == 3
    # The limit is the user's, whichever device sends.
    other_device = await ws_connect(await database_sync_to_async(make_token)(a), ready=True)
    error_of(await other_device.request({"type": "chat.send", "id": "x", "room": room.pk,
                                         "client_msg_id": "m9", "text": "hi"}), "rate_limited")
    assert await database_sync_to_async(
        RoomEvent.objects.filter(room=room, kind="message").count)() == 3


def test_rest_send_rate_limit_sets_retry_after_header(chat_user, make_api_client, make_token,
                                                      settings) -> None:
    settings.SONOR_CHAT_SEND_RATE = 1
    a, b = chat_user(), chat_user()
    room = direct_room(a, b)
    client = make_api_client(make_token(a))
    path = f"/api/v1/rooms/{room.pk}/messages"
    assert client.post(path, {"client_msg_id": "1", "text": "x"}).status_code == 201
    refused = client.post(path, {"client_msg_id": "2", "text": "x"})
    assert (refused.status_code, refused.json()["code"]) == (429, "rate_limited")
    assert int(refused["Retry-After"]) >= 1


# ---- new accounts --------------------------------------------------------------------------

def test_new_accounts_start_only_a_few_direct_conversations_a_day(chat_user,
                                                                  settings) -> None:
    settings.SONOR_CHAT_NEW_ACCOUNT_DIRECT_PER_DAY = 2
    newcomer = chat_user()
    first, second, third = chat_user(), chat_user(), chat_user()
    direct_room(newcomer, first)
    chat_rooms.room_direct_get_or_create(user=newcomer, phone=new_phone())  # a held invite counts
    with pytest.raises(DirectRoomsLimit) as refused:
        direct_room(newcomer, second)
    assert 0 < refused.value.extra["retry_after"] <= 86400
    with pytest.raises(DirectRoomsLimit):
        chat_rooms.room_direct_get_or_create(user=newcomer, phone=new_phone())
    # Existing rooms are still returned, and others may still start rooms with the newcomer.
    assert direct_room(newcomer, first).pk == direct_room(first, newcomer).pk
    direct_room(third, newcomer)
    # A week later the account is no longer new.
    age(newcomer, 8)
    direct_room(newcomer, second)


def test_new_accounts_add_only_a_few_group_members_a_day(chat_user, settings) -> None:
    settings.SONOR_CHAT_NEW_ACCOUNT_ADDS_PER_DAY = 2
    newcomer = chat_user()
    people = [chat_user() for _ in range(3)]
    room = group(newcomer, people[0], people[1])
    with pytest.raises(RateLimited):
        chat_rooms.group_member_add(actor=newcomer, room_id=room.pk, phone=phone_of(people[2]))
    veteran = age(chat_user(), 30)
    group(veteran, *people)


# ---- blocking ------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
async def test_blocked_user_messages_are_held_and_they_are_not_told(ws_connect, make_token,
                                                                    chat_user) -> None:
    blocker = await database_sync_to_async(chat_user)()
    pest = await database_sync_to_async(chat_user)()
    room = await database_sync_to_async(direct_room)(pest, blocker)
    await database_sync_to_async(chat_moderation.user_block)(blocker=blocker, user_id=pest.pk)
    pest_socket = await ws_connect(await database_sync_to_async(make_token)(pest), ready=True)
    blocker_socket = await ws_connect(await database_sync_to_async(make_token)(blocker),
                                      ready=True)

    ack = await pest_socket.request({"type": "chat.send", "id": "s", "room": room.pk,
                                     "client_msg_id": "m", "text": "hello?"})
    assert ack == protocol.Ack(id="s")  # accepted, as far as the sender can tell
    await pest_socket.send_json_to({"type": "chat.typing", "id": "t", "room": room.pk})
    assert await drain(pest_socket) == [protocol.Ack(id="t")]
    assert await blocker_socket.receive_nothing(timeout=0.3)
    assert await database_sync_to_async(
        RoomEvent.objects.filter(room=room, kind="message").exists)() is False

    # The blocker is told, and must unblock to write.
    error_of(await blocker_socket.request({"type": "chat.send", "id": "b", "room": room.pk,
                                           "client_msg_id": "b", "text": "x"}), "user_blocked")
    await database_sync_to_async(chat_moderation.user_unblock)(blocker=blocker, user_id=pest.pk)
    reply = await pest_socket.request({"type": "chat.send", "id": "s2", "room": room.pk,
                                       "client_msg_id": "m2", "text": "now?"})
    frames = [reply, *await drain(pest_socket)]
    assert any(isinstance(f, protocol.Ack) and f.seq == 3 for f in frames)
    assert isinstance(await blocker_socket.receive_frame(), protocol.ChatMessage)


def test_a_blocked_user_gets_no_new_direct_room_but_a_silent_held_invite(chat_user) -> None:
    blocker, pest = chat_user(), chat_user()
    first = chat_rooms.room_direct_get_or_create(user=pest, phone=phone_of(blocker))
    assert [i.pk for i in invitation_list(user=blocker)] == [first.pk]
    chat_moderation.user_block(blocker=blocker, user_id=pest.pk)  # from the request itself
    assert invitation_list(user=blocker) == []
    answer = chat_rooms.room_direct_get_or_create(user=pest, phone=phone_of(blocker))
    assert isinstance(answer, PendingInvite)  # what an unverified number would give
    assert not Room.objects.filter(kind="direct").exists()
    with pytest.raises(UserBlocked):
        chat_rooms.room_direct_get_or_create(user=blocker, phone=phone_of(pest))
    with pytest.raises(InviteNotFound):
        chat_invites.invitation_accept(user=blocker, invitation_id=first.pk)
    # Nor can they pull the blocker into a group, or tell them of it.
    held = chat_rooms.group_create(creator=pest, name="x", phones=[phone_of(blocker)])
    assert [i.e164 for i in held.pending] == [phone_of(blocker)]
    assert held.room.member_count == 1
    assert invitation_list(user=blocker) == []
    # Unblocking shows what was held, for the blocker to answer.
    chat_moderation.user_unblock(blocker=blocker, user_id=pest.pk)
    assert {i.kind for i in invitation_list(user=blocker)} == {"direct", "group"}
    assert not Room.objects.filter(kind="direct").exists()


def test_blocks_do_not_silence_groups(chat_user) -> None:
    blocker, pest, other = chat_user(), chat_user(), chat_user()
    room = group(other, blocker, pest)
    chat_moderation.user_block(blocker=blocker, user_id=pest.pk)
    # Server-side, a group message reaches everyone; clients hide blocked users' messages.
    assert send(pest, room).seq == 5


# ---- reports -------------------------------------------------------------------------------

def test_report_keeps_a_copy_of_the_text_after_deletion(chat_user) -> None:
    victim, abuser = chat_user(), chat_user()
    room = direct_room(abuser, victim)
    message = send(abuser, room, "заналхийлэл")
    report = chat_moderation.report_create(reporter=victim, message_id=message.pk,
                                           reason="заналхийлсэн")
    chat_messages.message_delete(user=abuser, room_id=room.pk, message_id=message.pk)
    report.refresh_from_db()
    assert (report.text, report.reported_user_id, report.room_id, report.handled_at) == (
        "заналхийлэл", abuser.pk, room.pk, None)
    message.refresh_from_db()
    assert message.text == ""
    staff = chat_user()
    chat_moderation.report_handle(report=report, staff=staff, resolution="warned")
    assert Report.objects.filter(handled_at__isnull=True).count() == 0


def test_report_rules(chat_user, settings) -> None:
    a, b, outsider = chat_user(), chat_user(), chat_user()
    room = direct_room(a, b)
    message = send(a, room)
    with pytest.raises(MessageNotFound):  # only messages one can see
        chat_moderation.report_create(reporter=outsider, message_id=message.pk, reason="x")
    with pytest.raises(ReportInvalid):
        chat_moderation.report_create(reporter=a, message_id=message.pk, reason="x")
    with pytest.raises(ReportInvalid):
        chat_moderation.report_create(reporter=b, message_id=message.pk, reason="  ")
    settings.SONOR_CHAT_REPORTS_PER_HOUR = 2
    chat_moderation.report_create(reporter=b, user_id=a.pk, reason="робот")
    chat_moderation.report_create(reporter=b, message_id=message.pk, reason="спам")
    with pytest.raises(RateLimited):
        chat_moderation.report_create(reporter=b, user_id=a.pk, reason="дахиад")
