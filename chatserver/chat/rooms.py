"""Rooms: direct rooms between contacts, groups, their members, names and roles.

A new member's sockets get `room.join` (with the events that added them) through the user's
own group and start following the room; a leaving member's stop after the frames saying so.
"""

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone
from pydantic import BaseModel

from chatserver.chat.config import chat_setting
from chatserver.chat.errors import (
    NotAGroup,
    NotMember,
    RoleForbidden,
    RoomFull,
    SelfChat,
    UserBlocked,
)
from chatserver.chat.frames import event_frame
from chatserver.chat.invites import invitation_accept, invitations_open, invite_hold
from chatserver.chat.membership import (
    active_membership,
    contacts_among,
    direct_key,
    discovery_throttle,
    group_locked,
    is_blocked,
    known_phone_set,
    member_event,
    member_join_locked,
    member_leave_locked,
    new_account_adds,
    room_create,
    user_route_throttle,
    verified_owner,
)
from chatserver.chat.models import Block, Membership, PendingInvite, Room, RoomEvent
from chatserver.chat.streams import Unchanged, require_verified_phone, seq_allocate_or_raise
from chatserver.chat.text import text_clean
from chatserver.core.errors import InvalidInput
from chatserver.core.realtime import publish_room_on_commit
from identity.domain import mobile_parse
from identity.models import PhoneNumber, User

Role = Membership.Role


GROUP_NAME_MAX = 100


def room_direct_get_or_create(*, user: User, phone: str) -> Room | PendingInvite:
    """The direct room of `user` and whoever verified `phone`, if they have talked before (the
    same room when asked again). Otherwise a message request: an invitation that the owner
    of the number accepts or declines (or, for a number no one has verified, one held until
    someone does). The caller cannot tell these apart: the answer names no one until the
    other side says yes, and a user who blocked the caller or declined is not revealed.
    Asking for a number whose owner already asked the caller accepts their request."""
    require_verified_phone(user)
    e164 = mobile_parse(phone)
    peer = verified_owner(e164)
    if peer is not None and peer.pk == user.pk:
        raise SelfChat()
    if peer is not None:
        room = Room.objects.filter(direct_key=direct_key(user.pk, peer.pk)).first()
        if room is not None:
            known_phone_set(room=room, user=user, e164=e164)
            return room
        if is_blocked(blocker_id=user.pk, blocked_id=peer.pk):
            raise UserBlocked()
    discovery_throttle(user, 1)
    if peer is not None and not is_blocked(blocker_id=peer.pk, blocked_id=user.pk):
        theirs = invitations_open().filter(inviter=peer, invitee=user,
                                           kind=PendingInvite.Kind.DIRECT).first()
        if theirs is not None:  # they asked first: asking back is saying yes
            room = invitation_accept(user=user, invitation_id=theirs.pk)
            known_phone_set(room=room, user=user, e164=e164)
            return room
    return invite_hold(inviter=user, e164=e164, kind=PendingInvite.Kind.DIRECT, room=None,
                       invitee=peer)


def _group_name(name: str) -> str:
    clean = text_clean(name).strip()
    if "\n" in clean or "\t" in clean or len(clean) > GROUP_NAME_MAX:
        raise InvalidInput(f"A group name is one line of at most {GROUP_NAME_MAX} characters.")
    return clean


@dataclass
class GroupCreated:
    room: Room
    pending: list[PendingInvite]


def group_create(*, creator: User, name: str, phones: list[str]) -> GroupCreated:
    """A group owned by `creator` with the creator's contacts among the owners of `phones`
    as members; everyone else is invited (they accept or decline; a number no one has
    verified is held until someone does). The answer does not say which numbers are in
    use."""
    require_verified_phone(creator)
    clean_name = _group_name(name)
    if len(phones) > chat_setting("SONOR_CHAT_GROUP_INITIAL_MAX"):
        raise InvalidInput("Too many phone numbers for one request; add the rest later.")
    e164s = list(dict.fromkeys(mobile_parse(phone) for phone in phones))
    owners = {p.e164: p.user for p in PhoneNumber.objects.select_related("user").filter(
        e164__in=e164s, released_at__isnull=True)}
    blockers = set(Block.objects.filter(blocked=creator, blocker__in=owners.values())
                   .values_list("blocker_id", flat=True))
    contacts = contacts_among(creator, list(owners.values()))
    members: list[User] = []
    invited: list[tuple[str, User | None]] = []
    for e164 in e164s:
        owner = owners.get(e164)
        if owner is not None and owner.pk == creator.pk:
            continue
        if owner is not None and not owner.is_active:
            owner = None
        if owner is not None and owner.pk in contacts and owner.pk not in blockers:
            members.append(owner)
        else:
            invited.append((e164, owner))
    discovery_throttle(creator, len(invited))
    new_account_adds(creator, len(members) + len(invited))
    if len(members) + 1 > chat_setting("SONOR_CHAT_MEMBER_LIMIT"):
        raise RoomFull()
    with transaction.atomic():
        room = room_create(kind=Room.Kind.GROUP, name=clean_name, creator=creator,
                           members=[(creator, Role.OWNER), *((m, Role.MEMBER) for m in members)])
        pending = [invite_hold(inviter=creator, e164=e164, kind=PendingInvite.Kind.GROUP,
                               room=room, invitee=owner) for e164, owner in invited]
    return GroupCreated(room=room, pending=pending)


def group_member_add(*, actor: User, room_id: int, phone: str) -> Membership | PendingInvite:
    """An admin adds a contact of theirs (someone they share a direct room with) who
    verified `phone`; anyone else gets an invitation to the group (held, for a number no one
    has verified). Adding a member again changes nothing. Plain members are refused before
    the number is looked at: they cannot test who is in the group."""
    actor_membership = active_membership(room_id=room_id, user_id=actor.pk)
    room = Room.objects.get(pk=room_id)
    if room.kind != Room.Kind.GROUP:
        raise NotAGroup()
    if actor_membership.role not in (Role.OWNER, Role.ADMIN):
        raise RoleForbidden()
    require_verified_phone(actor)
    e164 = mobile_parse(phone)
    target = verified_owner(e164)
    if target is not None and target.pk == actor.pk:
        raise SelfChat()
    if target is not None:
        existing = Membership.objects.filter(room_id=room_id, user=target,
                                             left_at__isnull=True).first()
        if existing is not None:
            return existing
    if (target is None or is_blocked(blocker_id=target.pk, blocked_id=actor.pk)
        or not contacts_among(actor, [target])):
        discovery_throttle(actor, 1)
        new_account_adds(actor, 1)
        return invite_hold(inviter=actor, e164=e164, kind=PendingInvite.Kind.GROUP, room=room,
                           invitee=target)
    new_account_adds(actor, 1)
    try:
        with transaction.atomic():
            room, _, seq = group_locked(room_id=room_id, actor=actor, require_phone=True,
                                        roles=(Role.OWNER, Role.ADMIN))
            current = Membership.objects.filter(room=room, user=target,
                                                left_at__isnull=True).first()
            if current is not None:
                raise Unchanged(current)
            return member_join_locked(room=room, seq=seq, user=target, by=actor)
    except Unchanged as unchanged:
        assert isinstance(unchanged.value, Membership)
        return unchanged.value


def group_member_remove(*, actor: User, room_id: int, user_id: int) -> None:
    """An owner removes anyone; an admin removes members (not admins or the owner)."""
    user_route_throttle(actor)
    if user_id == actor.pk:
        room_leave(user=actor, room_id=room_id)
        return
    with transaction.atomic():
        room, actor_membership, seq = group_locked(room_id=room_id, actor=actor,
                                                   roles=(Role.OWNER, Role.ADMIN))
        target = Membership.objects.select_related("user").filter(
            room=room, user_id=user_id, left_at__isnull=True).first()
        if target is None:
            raise NotMember("That user is not a member of this room.")
        if target.role == Role.OWNER or (actor_membership.role == Role.ADMIN
                                         and target.role == Role.ADMIN):
            raise RoleForbidden()
        frame = member_leave_locked(room=room, seq=seq, membership=target, action="removed",
                                    by=actor)
        publish_room_on_commit(room.pk, [frame], leave_user_ids=(user_id,))


def group_rename(*, actor: User, room_id: int, name: str) -> Room:
    clean = _group_name(name)
    with transaction.atomic():
        room, _, seq = group_locked(room_id=room_id, actor=actor,
                                    roles=(Role.OWNER, Role.ADMIN))
        room.name = clean
        room.save(update_fields=["name"])
        event = RoomEvent.objects.create(room_id=room_id, seq=seq, kind=RoomEvent.Kind.RENAME,
                                         sender=actor, text=clean)
        publish_room_on_commit(room_id, [event_frame(event)])
    room.last_seq = seq
    return room


def group_role_set(*, actor: User, room_id: int, user_id: int, role: str) -> Membership:
    """Admins promote members to admin; the owner also demotes admins and hands ownership
    on (role owner: the old owner becomes an admin). Setting a role a member has changes
    nothing."""
    user_route_throttle(actor)
    if role not in Role.values:
        raise InvalidInput("The role is owner, admin or member.")
    if user_id == actor.pk:
        raise RoleForbidden("You cannot change your own role; hand ownership on instead.")
    try:
        with transaction.atomic():
            count = 2 if role == Role.OWNER else 1
            room, actor_membership, head = group_locked(
                room_id=room_id, actor=actor, roles=(Role.OWNER, Role.ADMIN), count=count)
            target = Membership.objects.select_related("user").filter(
                room=room, user_id=user_id, left_at__isnull=True).first()
            if target is None:
                raise NotMember("That user is not a member of this room.")
            if target.role == role:
                raise Unchanged(target)
            if actor_membership.role == Role.ADMIN and not (
                    target.role == Role.MEMBER and role == Role.ADMIN):
                raise RoleForbidden()
            now = timezone.now()
            seq = head - count + 1
            target.role = role
            target.save(update_fields=["role"])
            frames: list[BaseModel] = [member_event(room_id=room_id, seq=seq, subject=target.user,
                                   action="role", role=role, by=actor, now=now)]
            if role == Role.OWNER:
                actor_membership.role = Role.ADMIN
                actor_membership.save(update_fields=["role"])
                frames.append(member_event(room_id=room_id, seq=seq + 1, subject=actor,
                                           action="role", role=Role.ADMIN, by=actor, now=now))
            publish_room_on_commit(room_id, frames)
            return target
    except Unchanged as unchanged:
        assert isinstance(unchanged.value, Membership)
        return unchanged.value


def room_leave(*, user: User, room_id: int) -> None:
    """Leave a group. An owner who leaves hands ownership to the longest-standing admin, else
    to the longest-standing member. Direct rooms are not left (block the user instead)."""
    with transaction.atomic():
        room, membership, seq = group_locked(
            room_id=room_id, actor=user, roles=(Role.OWNER, Role.ADMIN, Role.MEMBER))
        frames: list[BaseModel] = []
        if membership.role == Role.OWNER:
            others = Membership.objects.select_related("user").filter(
                room=room, left_at__isnull=True).exclude(user=user).order_by("joined_at", "pk")
            successor = others.filter(role=Role.ADMIN).first() or others.first()
            if successor is not None:
                successor.role = Role.OWNER
                successor.save(update_fields=["role"])
                frames.append(member_event(room_id=room_id, seq=seq, subject=successor.user,
                                           action="role", role=Role.OWNER, by=user,
                                           now=timezone.now()))
                seq = seq_allocate_or_raise(room_id=room_id, actor=user)
        membership.user = user
        frames.append(member_leave_locked(room=room, seq=seq, membership=membership,
                                          action="left", by=user))
        publish_room_on_commit(room_id, frames, leave_user_ids=(user.pk,))
