"""Rooms: verified numbers only, one direct room per pair, held invites, groups with roles,
membership events in the stream, and sockets that follow membership live."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from chatserver.chat import invites as chat_invites
from chatserver.chat import messages as chat_messages
from chatserver.chat import rooms as chat_rooms
from chatserver.chat.errors import (
    NotAGroup,
    NotMember,
    PhoneNotVerified,
    RoleForbidden,
    RoomFull,
    SelfChat,
)
from chatserver.chat.models import Membership, PendingInvite, Room, RoomEvent
from chatserver.chat.selectors import invitation_list, room_history
from chatserver.core import protocol
from notify.models import Notification
from tests.chatserver import chat_helpers
from tests.chatserver.chat_helpers import (
    adirect_room,
    agroup,
    asend,
    direct_room,
    drain,
    group,
    new_phone,
    phone_of,
    receive_until,
    send,
    seqs,
)

pytestmark = pytest.mark.django_db
chat_user = chat_helpers.chat_user
fresh_cache = chat_helpers.fresh_cache


def members(room: Room) -> dict[int, str]:
    return dict(Membership.objects.filter(room=room, left_at__isnull=True)
                .values_list("user_id", "role"))


def member_events(room: Room) -> list[tuple[int, str, int | None, str, int | None]]:
    return [(e.seq, e.action, e.subject_id, e.role, e.sender_id) for e in
            RoomEvent.objects.filter(room=room, kind="member").order_by("seq")]


# ---- who may chat --------------------------------------------------------------------------

def test_only_citizens_with_a_verified_number_chat(make_citizen, chat_user) -> None:
    unverified = make_citizen()
    verified = chat_user()
    with pytest.raises(PhoneNotVerified):
        chat_rooms.room_direct_get_or_create(user=unverified, phone=phone_of(verified))
    with pytest.raises(PhoneNotVerified):
        chat_rooms.group_create(creator=unverified, name="Бүлэг", phones=[])
    # A member whose number went to someone else cannot send until they verify a new one.
    other = chat_user()
    room = direct_room(verified, other)
    verified.phones.update(released_at=timezone.now(), release_reason="reassigned")
    with pytest.raises(PhoneNotVerified):
        send(verified, room)


def test_direct_room_is_one_per_pair_whoever_asks(chat_user) -> None:
    a, b = chat_user("А"), chat_user("Б")
    room = direct_room(a, b)
    assert direct_room(a, b).pk == room.pk
    assert direct_room(b, a).pk == room.pk
    assert Room.objects.filter(kind="direct").count() == 1
    assert room.direct_key == f"{min(a.pk, b.pk)}:{max(a.pk, b.pk)}"
    assert members(room) == {a.pk: "member", b.pk: "member"}
    # The stream opens with both joins, added by the one who asked.
    assert member_events(room) == [(1, "joined", a.pk, "member", a.pk),
                                   (2, "joined", b.pk, "member", a.pk)]


def test_direct_room_with_oneself_is_refused(chat_user) -> None:
    a = chat_user()
    with pytest.raises(SelfChat):
        chat_rooms.room_direct_get_or_create(user=a, phone=phone_of(a))


def test_national_number_format_finds_the_same_user(chat_user) -> None:
    a, b = chat_user(), chat_user()
    national = phone_of(b).removeprefix("+976")
    room = direct_room(a, b)
    assert chat_rooms.room_direct_get_or_create(user=a, phone=national) == room


# ---- held invites --------------------------------------------------------------------------

def test_invite_to_an_unverified_number_is_held_once(chat_user) -> None:
    a = chat_user()
    number = new_phone()
    invite = chat_rooms.room_direct_get_or_create(user=a, phone=number)
    assert isinstance(invite, PendingInvite)
    assert (invite.e164, invite.inviter_id, invite.resolved_at) == (number, a.pk, None)
    again = chat_rooms.room_direct_get_or_create(user=a, phone=number)
    assert again.pk == invite.pk
    assert not Room.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_held_invite_becomes_an_invitation_when_the_number_is_verified(
        chat_user, make_citizen, make_token, make_api_client, sms_code) -> None:
    inviter = chat_user("Бат")
    number = new_phone()
    invite = chat_rooms.room_direct_get_or_create(user=inviter, phone=number)
    assert isinstance(invite, PendingInvite)

    # Someone signs up and verifies that number through the real flow.
    newcomer = make_citizen(name="Дорж")
    client = make_api_client(make_token(newcomer))
    assert client.post("/api/v1/phones", {"phone": number}).status_code == 202
    verified = client.post("/api/v1/phones/verify", {"phone": number, "code": sms_code(number)})
    assert verified.status_code == 200, verified.content

    # The newcomer is asked, not put in a room: told who asks, in the inbox and the list.
    assert not Room.objects.exists()
    told = Notification.objects.get(user=newcomer, category="chat")
    assert "Бат" in told.title
    invitations = client.get("/api/v1/invitations").json()
    assert [(i["id"], i["kind"], i["from_user"], i["from_name"]) for i in invitations] == [
        (invite.pk, "direct", inviter.pk, "Бат")]
    accepted = client.post(f"/api/v1/invitations/{invite.pk}/accept")
    assert accepted.status_code == 200, accepted.content
    room = Room.objects.get(pk=accepted.json()["id"])
    assert room.kind == "direct"
    assert members(room) == {inviter.pk: "member", newcomer.pk: "member"}
    assert member_events(room)[1] == (2, "joined", newcomer.pk, "member", inviter.pk)
    invite.refresh_from_db()
    assert invite.resolved_user_id == newcomer.pk and invite.room_id == room.pk
    assert client.get("/api/v1/invitations").json() == []
    # Asking again now returns the room.
    assert direct_room(inviter, newcomer).pk == room.pk


def test_group_invite_to_an_unverified_number_joins_once_accepted(chat_user) -> None:
    owner, friend = chat_user(), chat_user()
    direct_room(owner, friend)  # they have talked: the friend is added at once
    number = new_phone()
    created = chat_rooms.group_create(creator=owner, name="Анги", phones=[phone_of(friend), number])
    room = created.room
    assert [p.e164 for p in created.pending] == [number]
    assert set(members(room)) == {owner.pk, friend.pk}

    newcomer = chat_user()
    newcomer.phones.update(e164=number)  # as if verified: the resolver is what the signal runs
    chat_invites.invites_resolve(user=newcomer, e164=number)
    assert newcomer.pk not in members(room)
    chat_invites.invitation_accept(user=newcomer, invitation_id=created.pending[0].pk)
    assert members(room)[newcomer.pk] == "member"
    assert member_events(room)[-1] == (4, "joined", newcomer.pk, "member", owner.pk)


def test_cancelled_invite_does_not_resolve(chat_user) -> None:
    a = chat_user()
    number = new_phone()
    invite = chat_rooms.room_direct_get_or_create(user=a, phone=number)
    chat_invites.invite_cancel(user=a, invite_id=invite.pk)
    b = chat_user()
    chat_invites.invites_resolve(user=b, e164=number)
    assert not Room.objects.exists()
    assert invitation_list(user=b) == []


# ---- groups --------------------------------------------------------------------------------

def test_group_create_opens_with_the_name_and_the_joins(chat_user) -> None:
    owner, m1, m2 = chat_user(), chat_user(), chat_user()
    room = group(owner, m1, m2, name="  Ажлын бүлэг ")
    assert (room.kind, room.name, room.member_count) == ("group", "Ажлын бүлэг", 3)
    assert members(room) == {owner.pk: "owner", m1.pk: "member", m2.pk: "member"}
    first = RoomEvent.objects.get(room=room, seq=1)
    assert (first.kind, first.text, first.sender_id) == ("rename", "Ажлын бүлэг", owner.pk)
    assert seqs(room) == [1, 2, 3, 4]


def test_admins_add_by_phone_members_cannot(chat_user) -> None:
    owner, member, newcomer = chat_user(), chat_user(), chat_user()
    room = group(owner, member)
    direct_room(member, newcomer)  # contacts: an admin adds a contact at once
    with pytest.raises(RoleForbidden):
        chat_rooms.group_member_add(actor=member, room_id=room.pk, phone=phone_of(newcomer))
    chat_rooms.group_role_set(actor=owner, room_id=room.pk, user_id=member.pk, role="admin")
    added = chat_rooms.group_member_add(actor=member, room_id=room.pk, phone=phone_of(newcomer))
    assert isinstance(added, Membership) and added.user_id == newcomer.pk
    # Adding again changes nothing and costs no seq.
    head = Room.objects.get(pk=room.pk).last_seq
    chat_rooms.group_member_add(actor=member, room_id=room.pk, phone=phone_of(newcomer))
    assert Room.objects.get(pk=room.pk).last_seq == head
    assert member_events(room)[-1] == (head, "joined", newcomer.pk, "member", member.pk)


def test_remove_rules(chat_user) -> None:
    owner, admin, admin2, member = chat_user(), chat_user(), chat_user(), chat_user()
    room = group(owner, admin, admin2, member)
    for user in (admin, admin2):
        chat_rooms.group_role_set(actor=owner, room_id=room.pk, user_id=user.pk, role="admin")
    with pytest.raises(RoleForbidden):  # an admin removes members only
        chat_rooms.group_member_remove(actor=admin, room_id=room.pk, user_id=admin2.pk)
    with pytest.raises(RoleForbidden):
        chat_rooms.group_member_remove(actor=admin, room_id=room.pk, user_id=owner.pk)
    with pytest.raises(RoleForbidden):
        chat_rooms.group_member_remove(actor=member, room_id=room.pk, user_id=admin.pk)
    chat_rooms.group_member_remove(actor=admin, room_id=room.pk, user_id=member.pk)
    chat_rooms.group_member_remove(actor=owner, room_id=room.pk, user_id=admin2.pk)
    assert set(members(room)) == {owner.pk, admin.pk}
    assert [e[1:3] for e in member_events(room)[-2:]] == [("removed", member.pk),
                                                          ("removed", admin2.pk)]
    # A removed member can no longer send or read.
    with pytest.raises(NotMember):
        send(member, room)
    assert Room.objects.get(pk=room.pk).member_count == 2


def test_rename_is_an_event_and_needs_an_admin(chat_user) -> None:
    owner, member = chat_user(), chat_user()
    room = group(owner, member)
    with pytest.raises(RoleForbidden):
        chat_rooms.group_rename(actor=member, room_id=room.pk, name="Шинэ")
    chat_rooms.group_rename(actor=owner, room_id=room.pk, name="Шинэ нэр")
    room.refresh_from_db()
    event = RoomEvent.objects.get(room=room, seq=room.last_seq)
    assert (room.name, event.kind, event.text, event.sender_id) == (
        "Шинэ нэр", "rename", "Шинэ нэр", owner.pk)


def test_roles_promote_demote_and_hand_ownership_on(chat_user) -> None:
    owner, a, b = chat_user(), chat_user(), chat_user()
    room = group(owner, a, b)
    chat_rooms.group_role_set(actor=owner, room_id=room.pk, user_id=a.pk, role="admin")
    chat_rooms.group_role_set(actor=a, room_id=room.pk, user_id=b.pk, role="admin")  # promote
    with pytest.raises(RoleForbidden):  # only the owner demotes
        chat_rooms.group_role_set(actor=a, room_id=room.pk, user_id=b.pk, role="member")
    chat_rooms.group_role_set(actor=owner, room_id=room.pk, user_id=b.pk, role="member")
    chat_rooms.group_role_set(actor=owner, room_id=room.pk, user_id=a.pk, role="owner")
    assert members(room) == {owner.pk: "admin", a.pk: "owner", b.pk: "member"}
    head = Room.objects.get(pk=room.pk).last_seq
    assert member_events(room)[-2:] == [(head - 1, "role", a.pk, "owner", owner.pk),
                                        (head, "role", owner.pk, "admin", owner.pk)]


def test_anyone_leaves_and_a_leaving_owner_hands_ownership_on(chat_user) -> None:
    owner, first, admin, last = chat_user(), chat_user(), chat_user(), chat_user()
    room = group(owner, first, admin, last)
    chat_rooms.group_role_set(actor=owner, room_id=room.pk, user_id=admin.pk, role="admin")
    chat_rooms.room_leave(user=last, room_id=room.pk)
    # Admins come first, then the longest-standing member.
    chat_rooms.room_leave(user=owner, room_id=room.pk)
    assert members(room) == {first.pk: "member", admin.pk: "owner"}
    head = Room.objects.get(pk=room.pk).last_seq
    assert member_events(room)[-2:] == [(head - 1, "role", admin.pk, "owner", owner.pk),
                                        (head, "left", owner.pk, "owner", owner.pk)]
    chat_rooms.room_leave(user=admin, room_id=room.pk)
    assert members(room) == {first.pk: "owner"}


def test_direct_rooms_have_no_group_operations(chat_user) -> None:
    a, b = chat_user(), chat_user()
    room = direct_room(a, b)
    with pytest.raises(NotAGroup):
        chat_rooms.room_leave(user=a, room_id=room.pk)
    with pytest.raises(NotAGroup):
        chat_rooms.group_rename(actor=a, room_id=room.pk, name="x")
    assert seqs(room) == [1, 2]


def test_member_limit_is_configurable(chat_user, settings) -> None:
    settings.SONOR_CHAT_MEMBER_LIMIT = 3
    owner, a, b, c = chat_user(), chat_user(), chat_user(), chat_user()
    for contact in (a, b, c):
        direct_room(owner, contact)
    with pytest.raises(RoomFull):
        group(owner, a, b, c)
    room = group(owner, a, b)
    assert room.member_limit == 3
    with pytest.raises(RoomFull):
        chat_rooms.group_member_add(actor=owner, room_id=room.pk, phone=phone_of(c))
    chat_rooms.room_leave(user=b, room_id=room.pk)
    chat_rooms.group_member_add(actor=owner, room_id=room.pk, phone=phone_of(c))


def test_member_limit_default_is_ten_thousand(chat_user) -> None:
    assert group(chat_user(), chat_user()).member_limit == 10_000


def test_every_kind_of_event_shares_one_gap_free_sequence(chat_user) -> None:
    owner, a, b = chat_user(), chat_user(), chat_user()
    room = group(owner, a)
    m = send(a, room)
    chat_messages.message_edit(user=a, room_id=room.pk, message_id=m.pk, text="засвар")
    chat_helpers.member_add(owner, room, b)
    chat_rooms.group_rename(actor=owner, room_id=room.pk, name="Өөр")
    chat_messages.message_delete(user=a, room_id=room.pk, message_id=m.pk)
    chat_rooms.group_role_set(actor=owner, room_id=room.pk, user_id=b.pk, role="admin")
    chat_rooms.room_leave(user=a, room_id=room.pk)
    kinds = list(RoomEvent.objects.filter(room=room).order_by("seq").values_list("kind",
                                                                                 flat=True))
    assert kinds == ["rename", "member", "member", "message", "edit", "member", "rename",
                     "delete", "member", "member"]
    assert seqs(room) == list(range(1, 11))
    assert Room.objects.get(pk=room.pk).last_seq == 10


def test_failed_operations_cost_no_seq(chat_user) -> None:
    owner, member, outsider = chat_user(), chat_user(), chat_user()
    room = group(owner, member)
    for attempt in (
        lambda: chat_rooms.group_rename(actor=member, room_id=room.pk, name="x"),
        lambda: chat_rooms.group_member_remove(actor=member, room_id=room.pk, user_id=owner.pk),
        lambda: send(outsider, room),
    ):
        with pytest.raises((RoleForbidden, NotMember)):
            attempt()
    assert Room.objects.get(pk=room.pk).last_seq == 3
    assert seqs(room) == [1, 2, 3]


def test_rejoining_member_sees_only_the_new_stretch(chat_user) -> None:
    owner, member = chat_user(), chat_user()
    room = group(owner, member)
    chat_rooms.room_leave(user=member, room_id=room.pk)
    send(owner, room, "while away")
    chat_helpers.member_add(owner, room, member)
    membership = Membership.objects.get(room=room, user=member)
    assert membership.left_at is None
    assert membership.joined_seq == Room.objects.get(pk=room.pk).last_seq
    page = room_history(user=member, room_id=room.pk)
    assert [type(e) for e in page.events] == [protocol.ChatMember]
    assert not page.has_more


# ---- live membership on sockets ------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
async def test_a_socket_follows_rooms_it_is_added_to_and_leaves_those_it_is_removed_from(
        ws_connect, chat_user, make_token) -> None:
    owner, member = await database_sync_to_async(chat_user)(), \
        await database_sync_to_async(chat_user)()
    owner_socket = await ws_connect(await database_sync_to_async(make_token)(owner), ready=True)
    member_socket = await ws_connect(await database_sync_to_async(make_token)(member),
                                     ready=True)
    room = await agroup(owner)
    created = await drain(owner_socket)
    assert [type(f) for f in created] == [protocol.ChatRoomRenamed, protocol.ChatMember]

    invite = await database_sync_to_async(chat_rooms.group_member_add)(
        actor=owner, room_id=room.pk, phone=await database_sync_to_async(phone_of)(member))
    assert isinstance(invite, PendingInvite)  # they have not talked: the member is asked
    invitation = await receive_until(member_socket, protocol.ChatInvitation)
    assert invitation == protocol.ChatInvitation(
        id=invite.pk, kind="group", from_user=owner.pk, from_name=owner.name, room=room.pk,
        room_name=room.name, created_at=invite.created_at)
    await drain(member_socket)  # the inbox notice of it
    await database_sync_to_async(chat_invites.invitation_accept)(user=member,
                                                             invitation_id=invite.pk)
    joined = await member_socket.receive_frame()
    assert joined == protocol.ChatMember(room=room.pk, seq=3, user=member.pk, name=member.name,
                                         action="joined", role="member", by=owner.pk)
    assert await owner_socket.receive_frame() == joined

    # Now a member, the socket gets the room's messages live.
    message = await asend(owner, room, "Тавтай морил")
    live = await member_socket.receive_frame()
    assert isinstance(live, protocol.ChatMessage)
    assert (live.seq, live.id, live.text) == (4, message.pk, "Тавтай морил")

    await database_sync_to_async(chat_rooms.group_member_remove)(
        actor=owner, room_id=room.pk, user_id=member.pk)
    removed = await member_socket.receive_frame()
    assert isinstance(removed, protocol.ChatMember) and removed.action == "removed"
    await asend(owner, room, "after")
    assert await member_socket.receive_nothing(timeout=0.3)
    await drain(owner_socket)


@pytest.mark.django_db(transaction=True)
async def test_both_sockets_get_a_new_direct_room(ws_connect, chat_user, make_token) -> None:
    a, b = await database_sync_to_async(chat_user)(), await database_sync_to_async(chat_user)()
    socket_a = await ws_connect(await database_sync_to_async(make_token)(a), ready=True)
    socket_b = await ws_connect(await database_sync_to_async(make_token)(b), ready=True)
    room = await adirect_room(a, b)  # a asks, b accepts
    for socket in (socket_a, socket_b):
        frames = await drain(socket)
        assert [(f.seq, f.user) for f in frames if isinstance(f, protocol.ChatMember)
                ] == [(1, a.pk), (2, b.pk)]
    assert any(isinstance(f, protocol.ChatInvitation) for f in frames)  # b was asked first
    await asend(b, room, "hi")
    assert isinstance(await socket_a.receive_frame(), protocol.ChatMessage)



# ---- presence (for offline push) -----------------------------------------------------------

@pytest.mark.django_db(transaction=True)
async def test_chat_offline_members_are_those_without_a_live_socket(
        ws_connect, chat_user, make_token, settings) -> None:
    from chatserver.chat.models import SocketPresence
    from chatserver.chat.selectors import chat_offline_members

    owner, online, offline = [await database_sync_to_async(chat_user)() for _ in range(3)]
    room = await agroup(owner, online, offline)
    offline_ids = database_sync_to_async(chat_offline_members)
    async def offline_becomes(expected: list[int], exclude_user_id: int) -> None:
        """Each process writes presence about once a second: wait for it, a few seconds."""
        for _ in range(100):
            if await offline_ids(room_id=room.pk, exclude_user_id=exclude_user_id) == expected:
                return
            await asyncio.sleep(0.05)
        assert await offline_ids(room_id=room.pk, exclude_user_id=exclude_user_id) == expected

    settings.SONOR_CHAT_PRESENCE_FLUSH = 0.05
    socket = await ws_connect(await database_sync_to_async(make_token)(online), ready=True)
    await offline_becomes([offline.pk], exclude_user_id=owner.pk)
    # The sender is never in the list; everyone else without a socket is.
    assert await offline_ids(room_id=room.pk, exclude_user_id=offline.pk) == [owner.pk]
    await socket.disconnect()
    await offline_becomes(sorted([online.pk, offline.pk]), exclude_user_id=owner.pk)
    # A socket of a process that died without closing counts until its presence goes stale.
    socket = await ws_connect(await database_sync_to_async(make_token)(online), ready=True)
    await offline_becomes([offline.pk], exclude_user_id=owner.pk)
    settings.SONOR_CHAT_PRESENCE_TTL = 0
    assert online.pk in await offline_ids(room_id=room.pk, exclude_user_id=owner.pk)
    settings.SONOR_CHAT_PRESENCE_TTL = 150
    assert await database_sync_to_async(SocketPresence.objects.filter(user=online).count)() == 1
    # Members who left are not pushed to.
    await database_sync_to_async(chat_rooms.room_leave)(user=offline, room_id=room.pk)
    assert await offline_ids(room_id=room.pk, exclude_user_id=owner.pk) == []


# ---- slow sockets --------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
async def test_a_socket_too_far_behind_is_closed_and_its_drops_counted(
        ws_connect, chat_user, make_token, settings) -> None:
    from channels.layers import get_channel_layer

    from chatserver.core.realtime import room_group
    from chatserver.sockets.consumers import ROOM_FRAMES_DROPPED

    settings.SONOR_CHAT_SOCKET_BUFFER = 2
    a, b = await database_sync_to_async(chat_user)(), await database_sync_to_async(chat_user)()
    room = await adirect_room(a, b)
    socket = await ws_connect(await database_sync_to_async(make_token)(b), ready=True)
    before = ROOM_FRAMES_DROPPED._value.get()
    frame = protocol.ChatTypingEvent(room=room.pk, user=a.pk).model_dump_json()
    await get_channel_layer().group_send(room_group(room.pk), {
        "type": "room.push", "room": room.pk, "texts": [frame] * 3,
        "group": room_group(room.pk)})
    await socket.expect_close(protocol.CLOSE_TOO_SLOW)
    assert ROOM_FRAMES_DROPPED._value.get() - before == 3
