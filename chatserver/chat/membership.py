"""Who is in a room and how they got there: membership checks, contacts, the limits on new
accounts and contact discovery, creating rooms and the member events of their streams."""

import logging
from datetime import datetime, timedelta

from django.db.models import F
from django.utils import timezone
from pydantic import BaseModel

from chatserver.chat.config import chat_setting
from chatserver.chat.errors import DirectRoomsLimit, NotAGroup, NotMember, RoleForbidden, RoomFull
from chatserver.chat.frames import event_frame, member_frame
from chatserver.chat.models import Block, Membership, PendingInvite, Room, RoomEvent
from chatserver.chat.streams import seq_allocate_or_raise
from chatserver.core import protocol
from chatserver.core.realtime import publish_room_on_commit, room_join_on_commit
from chatserver.core.throttle import throttle_check
from identity.models import PhoneNumber, User

log = logging.getLogger(__name__)
Role = Membership.Role


def direct_key(a: int, b: int) -> str:
    return f"{min(a, b)}:{max(a, b)}"


def active_membership(*, room_id: int, user_id: int) -> Membership:
    membership = Membership.objects.filter(room_id=room_id, user_id=user_id,
                                           left_at__isnull=True).first()
    if membership is None:
        raise NotMember()
    return membership


def is_active_member(*, room_id: int, user_id: int) -> bool:
    return Membership.objects.filter(room_id=room_id, user_id=user_id,
                                     left_at__isnull=True).exists()


def verified_owner(e164: str) -> User | None:
    """The active user who holds `e164` now, if any."""
    phone = PhoneNumber.objects.select_related("user").filter(
        e164=e164, released_at__isnull=True).first()
    if phone is None or not phone.user.is_active:
        return None
    return phone.user


def is_blocked(*, blocker_id: int, blocked_id: int) -> bool:
    return Block.objects.filter(blocker_id=blocker_id, blocked_id=blocked_id).exists()


def _is_new_account(user: User) -> bool:
    age = timezone.now() - user.created_at
    return age < timedelta(days=chat_setting("SONOR_CHAT_NEW_ACCOUNT_DAYS"))


def new_direct_allowed(user: User) -> None:
    """New accounts may start only a few direct conversations (rooms or held invites) a day:
    scripted sign-ups must not message strangers at scale (terms 3.4)."""
    if not _is_new_account(user):
        return
    since = timezone.now() - timedelta(days=1)
    invites = PendingInvite.objects.filter(inviter=user, kind=PendingInvite.Kind.DIRECT,
                                           created_at__gte=since)
    rooms = Room.objects.filter(created_by=user, kind=Room.Kind.DIRECT, created_at__gte=since
                                ).exclude(pk__in=invites.exclude(room=None).values("room"))
    started = sorted([*invites.values_list("created_at", flat=True),
                      *rooms.values_list("created_at", flat=True)])
    limit = chat_setting("SONOR_CHAT_NEW_ACCOUNT_DIRECT_PER_DAY")
    if len(started) >= limit:
        raise DirectRoomsLimit((started[-limit] + timedelta(days=1) - timezone.now())
                               .total_seconds())


def new_account_adds(user: User, count: int) -> None:
    if count and _is_new_account(user):
        for _ in range(count):
            throttle_check(key=f"chat-adds:{user.pk}",
                           limit=chat_setting("SONOR_CHAT_NEW_ACCOUNT_ADDS_PER_DAY"),
                           window_seconds=86400)


def room_create(*, kind: str, name: str, creator: User, members: list[tuple[User, str]],
                direct_key: str | None = None, known_phone: str = "") -> Room:
    """A new room whose stream opens with its name (groups) and one `joined` event per
    member, added by `creator`. Every member's sockets join it on commit. Caller holds a
    transaction."""
    now = timezone.now()
    events: list[RoomEvent] = []
    if kind == Room.Kind.GROUP:
        events.append(RoomEvent(seq=1, kind=RoomEvent.Kind.RENAME, sender=creator, text=name,
                                created_at=now))
    for user, role in members:
        events.append(RoomEvent(seq=len(events) + 1, kind=RoomEvent.Kind.MEMBER, sender=creator,
                                subject=user, action=RoomEvent.Action.JOINED, role=role,
                                created_at=now))
    room = Room.objects.create(
        kind=kind, name=name, direct_key=direct_key, created_by=creator, created_at=now,
        last_seq=len(events), member_count=len(members),
        member_limit=chat_setting("SONOR_CHAT_MEMBER_LIMIT"))
    Membership.objects.bulk_create([
        Membership(room=room, user=user, role=role, joined_at=now, joined_seq=1,
                   known_phone=known_phone if user.pk == creator.pk else "")
        for user, role in members])
    for event in events:
        event.room = room
    RoomEvent.objects.bulk_create(events)
    frames: list[BaseModel] = [event_frame(event) for event in events]
    for user, _ in members:
        room_join_on_commit(user.pk, room.pk, frames)
    log.info("%s room %s created by user %s with %s members", kind, room.pk, creator.pk,
             len(members))
    return room


def discovery_throttle(user: User, count: int) -> None:
    """Looking up numbers whose owners are not yet contacts is contact discovery: counted
    per account (every account, not only new ones), one per number, before anything about
    the numbers is answered."""
    for _ in range(count):
        throttle_check(key=f"chat-discovery:{user.pk}",
                       limit=chat_setting("SONOR_CHAT_DISCOVERY_PER_HOUR"), window_seconds=3600)


def contacts_among(user: User, others: list[User]) -> set[int]:
    """Ids among `others` who have talked with `user`: they share a direct room (which exists
    only once both said yes)."""
    keys = {direct_key(user.pk, other.pk): other.pk for other in others}
    return {keys[key] for key in Room.objects.filter(direct_key__in=list(keys))
            .values_list("direct_key", flat=True) if key is not None}


def known_phone_set(*, room: Room, user: User, e164: str) -> None:
    """`user` typed `e164` (which belongs to the other member now) to reach this room."""
    Membership.objects.filter(room=room, user=user).exclude(known_phone=e164).update(
        known_phone=e164)


def group_locked(*, room_id: int, actor: User, roles: tuple[str, ...],
                 require_phone: bool = False, count: int = 1) -> tuple[Room, Membership, int]:
    """Allocate `count` seqs as `actor` in group `room_id` (taking the room lock) and check
    the actor's role; returns the room, the actor's membership and the new head."""
    seq = seq_allocate_or_raise(room_id=room_id, actor=actor, count=count,
                                require_phone=require_phone)
    room = Room.objects.get(pk=room_id)
    if room.kind != Room.Kind.GROUP:
        raise NotAGroup()
    membership = active_membership(room_id=room_id, user_id=actor.pk)
    if membership.role not in roles:
        raise RoleForbidden()
    return room, membership, seq


def member_event(*, room_id: int, seq: int, subject: User, action: str, role: str,
                 by: User | None, now: datetime) -> protocol.ChatMember:
    event = RoomEvent.objects.create(
        room_id=room_id, seq=seq, kind=RoomEvent.Kind.MEMBER, sender=by, subject=subject,
        action=action, role=role, created_at=now)
    return member_frame(event, subject_name=subject.name)


def member_join_locked(*, room: Room, seq: int, user: User, by: User) -> Membership:
    """Add `user` to the locked group `room` at `seq` (a new row, or back after leaving)."""
    if room.member_count >= room.member_limit:
        raise RoomFull()
    now = timezone.now()
    membership = Membership.objects.filter(room=room, user=user).first()
    if membership is None:
        membership = Membership.objects.create(
            room=room, user=user, role=Role.MEMBER, joined_at=now, joined_seq=seq,
            last_read_seq=seq)
    else:
        membership.role = Role.MEMBER
        membership.joined_at = now
        membership.joined_seq = seq
        membership.left_at = None
        membership.left_seq = None
        membership.last_read_seq = seq
        membership.save()
    Room.objects.filter(pk=room.pk).update(member_count=F("member_count") + 1)
    frame = member_event(room_id=room.pk, seq=seq, subject=user, action="joined",
                         role=Role.MEMBER, by=by, now=now)
    publish_room_on_commit(room.pk, [frame])  # the members so far
    room_join_on_commit(user.pk, room.pk, [frame])  # the new member's sockets
    return membership


def member_leave_locked(*, room: Room, seq: int, membership: Membership, action: str,
                        by: User) -> protocol.ChatMember:
    now = timezone.now()
    membership.left_at = now
    membership.left_seq = seq
    membership.save(update_fields=["left_at", "left_seq"])
    Room.objects.filter(pk=room.pk).update(member_count=F("member_count") - 1)
    return member_event(room_id=room.pk, seq=seq, subject=membership.user, action=action,
                        role=membership.role, by=by, now=now)


def user_route_throttle(user: User) -> None:
    """Requests that name a user id are counted per account (with user_visible_get, probing
    ids learns nothing; the limit keeps it slow as well)."""
    throttle_check(key=f"chat-user-routes:{user.pk}",
                   limit=chat_setting("SONOR_CHAT_USER_ROUTES_PER_HOUR"), window_seconds=3600)
