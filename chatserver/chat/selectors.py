"""Reads for the device socket and the chat API: welcome and resume, history, room lists,
presence."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Exists, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from chatserver.chat.config import chat_setting
from chatserver.chat.errors import NotMember, UserNotFound
from chatserver.chat.frames import ChatEventFrame, event_frame, message_frame
from chatserver.chat.models import (
    Block,
    Membership,
    PendingInvite,
    Report,
    Room,
    RoomEvent,
    SocketPresence,
)
from chatserver.core import protocol
from identity.models import PhoneNumber, User

# Room streams the client must reload are named like this in welcome.resync.
RESYNC_ROOM = "room:{}"


def _events_query() -> Any:
    return RoomEvent.objects.select_related("subject", "target").only(
        "room_id", "seq", "kind", "sender_id", "client_msg_id", "text", "target",
        "subject", "action", "role", "created_at", "edited_at", "deleted_at",
        "subject__name", "target__edited_at", "target__deleted_at")


# ---- resume and history --------------------------------------------------------------------

def chat_resume(*, user: User, rooms: dict[str, int], limit: int, total_limit: int
                ) -> tuple[list[ChatEventFrame], list[str]]:
    """The room events the client missed, in order per room: for each listed room the events
    after its seq, and for each room the user is in that the client did not list, the events
    since the user joined. A room with more than `limit` missed events, or whose seq the
    server never reached, is named in resync instead (no partial answer); so is a listed room
    the user was never in. A room the user left gives the events up to the leaving. Past
    `total_limit` events in all, the remaining rooms are named in resync too: one hello never
    asks for more than that."""
    given: dict[int, int] = {}
    for key, seq in rooms.items():
        if key.isdigit() and int(key) > 0:
            given[int(key)] = seq
    memberships = Membership.objects.filter(user=user).filter(
        Q(left_at__isnull=True) | Q(room_id__in=list(given))
    ).select_related("room").only("room", "joined_seq", "left_at", "left_seq",
                                  "room__last_seq").order_by("room_id")
    resync: list[str] = []
    ranges: list[tuple[int, int, int]] = []  # (room_id, after, up_to)
    seen: set[int] = set()
    for membership in memberships:
        room_id = membership.room_id
        seen.add(room_id)
        head = membership.room.last_seq if membership.left_at is None else membership.left_seq
        assert head is not None
        after = given.get(room_id, 0)
        if after > membership.room.last_seq:
            resync.append(RESYNC_ROOM.format(room_id))
            continue
        after = max(after, membership.joined_seq - 1)
        if head <= after:
            continue
        if head - after > min(limit, total_limit):
            resync.append(RESYNC_ROOM.format(room_id))
            continue
        total_limit -= head - after
        ranges.append((room_id, after, head))
    resync.extend(RESYNC_ROOM.format(room_id) for room_id in sorted(set(given) - seen))
    frames: list[ChatEventFrame] = []
    for start in range(0, len(ranges), 50):  # one query per 50 rooms
        chunk = ranges[start:start + 50]
        condition = Q()
        for room_id, after, up_to in chunk:
            condition |= Q(room_id=room_id, seq__gt=after, seq__lte=up_to)
        frames.extend(event_frame(e) for e in _events_query().filter(condition)
                      .order_by("room_id", "seq"))
    return frames, resync


def membership_get(*, user: User, room_id: int) -> Membership:
    """The user's active membership of the room (the access check of every room read)."""
    membership = Membership.objects.select_related("room").filter(
        room_id=room_id, user=user, left_at__isnull=True).first()
    if membership is None:
        raise NotMember()
    return membership


@dataclass
class HistoryPage:
    room_id: int
    events: list[ChatEventFrame]
    has_more: bool


def room_history(*, user: User, room_id: int, before_seq: int | None = None,
                 after_seq: int | None = None, limit: int = 50) -> HistoryPage:
    """Consecutive events of the room's stream, oldest first: after `after_seq`, else before
    `before_seq`, else the newest. Only events since the user joined are visible."""
    membership = membership_get(user=user, room_id=room_id)
    first_visible = membership.joined_seq
    head = membership.room.last_seq
    limit = max(1, min(limit, chat_setting("SONOR_CHAT_HISTORY_MAX")))
    query = _events_query().filter(room_id=room_id, seq__gte=first_visible)
    if after_seq is not None:
        rows = list(query.filter(seq__gt=after_seq).order_by("seq")[:limit])
        has_more = bool(rows) and rows[-1].seq < head
    else:
        if before_seq is not None:
            query = query.filter(seq__lt=before_seq)
        rows = list(query.order_by("-seq")[:limit])[::-1]
        has_more = bool(rows) and rows[0].seq > first_visible
    return HistoryPage(room_id=room_id, events=[event_frame(e) for e in rows],
                       has_more=has_more)


def room_unread_count(*, room_id: int, user_id: int, last_read_seq: int) -> int:
    """Messages of others after the user's last read seq, not deleted."""
    return RoomEvent.objects.filter(
        room_id=room_id, kind=RoomEvent.Kind.MESSAGE, seq__gt=last_read_seq,
        deleted_at__isnull=True,
    ).exclude(sender_id=user_id).count()


# ---- room lists (REST) ---------------------------------------------------------------------

@dataclass
class PeerSummary:
    id: int
    name: str
    phone: str | None
    # verified: `phone` is the number the viewer reached them by, still theirs;
    # changed_hands: that number is theirs no more (the room stays with the person);
    # none: the viewer was never given a number of theirs.
    phone_status: str


@dataclass
class RoomSummary:
    id: int
    kind: str
    name: str
    role: str
    last_seq: int
    last_read_seq: int
    unread: int
    member_count: int
    created_at: datetime
    last_message: protocol.ChatMessage | None
    peer: PeerSummary | None


def _peer_summaries(peers: dict[int, tuple[int, str]]) -> dict[int, PeerSummary]:
    """Per direct room, its other member as the viewer may see them: {room_id: (user id,
    the number the viewer typed for them)}. Only that number is shown, and only while it is
    still theirs: never the one they use now if the viewer was not given it."""
    names = dict(User.objects.filter(pk__in={u for u, _ in peers.values()})
                 .values_list("id", "name"))
    held = set(PhoneNumber.objects.filter(
        e164__in={p for _, p in peers.values() if p}, released_at__isnull=True,
    ).values_list("user_id", "e164"))
    summaries = {}
    for room_id, (user_id, known_phone) in peers.items():
        if not known_phone:
            phone, status = None, "none"
        elif (user_id, known_phone) in held:
            phone, status = known_phone, "verified"
        else:
            phone, status = None, "changed_hands"
        summaries[room_id] = PeerSummary(user_id, names.get(user_id, ""), phone, status)
    return summaries


def room_list(*, user: User, room_id: int | None = None) -> list[RoomSummary]:
    """The user's rooms, most recently active first, each with its last message and unread
    count: four queries whatever the number of rooms."""
    last_message = RoomEvent.objects.filter(
        room_id=OuterRef("room_id"), kind=RoomEvent.Kind.MESSAGE).order_by("-seq").values("pk")[:1]
    unread = RoomEvent.objects.filter(
        room_id=OuterRef("room_id"), kind=RoomEvent.Kind.MESSAGE,
        seq__gt=OuterRef("last_read_seq"), deleted_at__isnull=True,
    ).exclude(sender_id=user.pk).order_by().values("room_id").annotate(n=Count("pk")).values("n")
    memberships = Membership.objects.filter(user=user, left_at__isnull=True).select_related(
        "room").annotate(
        last_message_id=Subquery(last_message),
        unread=Coalesce(Subquery(unread, output_field=IntegerField()), Value(0)),
    )
    if room_id is not None:
        memberships = memberships.filter(room_id=room_id)
    memberships_list = list(memberships)
    messages = RoomEvent.objects.in_bulk(
        [m.last_message_id for m in memberships_list if m.last_message_id])  # type: ignore
    known = {m.room_id: m.known_phone for m in memberships_list
             if m.room.kind == Room.Kind.DIRECT}
    peers = _peer_summaries({
        room_id: (peer_id, known[room_id]) for room_id, peer_id in
        Membership.objects.filter(room_id__in=list(known)).exclude(user=user)
        .values_list("room_id", "user_id")})
    summaries = []
    for m in memberships_list:
        message = messages.get(m.last_message_id)  # type: ignore[attr-defined]
        summaries.append(RoomSummary(
            id=m.room_id, kind=m.room.kind, name=m.room.name, role=m.role,
            last_seq=m.room.last_seq, last_read_seq=m.last_read_seq,
            unread=m.unread,  # type: ignore[attr-defined]
            member_count=m.room.member_count, created_at=m.room.created_at,
            last_message=message_frame(message) if message else None,
            peer=peers.get(m.room_id)))
    summaries.sort(key=lambda s: s.last_message.sent_at if s.last_message else s.created_at,
                   reverse=True)
    return summaries


def room_get(*, user: User, room_id: int) -> RoomSummary:
    rooms = room_list(user=user, room_id=room_id)
    if not rooms:
        raise NotMember()
    return rooms[0]


@dataclass
class MemberSummary:
    user_id: int
    name: str
    role: str
    joined_at: datetime
    last_read_seq: int


def room_members(*, user: User, room_id: int, after_user_id: int = 0, limit: int = 500
                 ) -> list[MemberSummary]:
    """Active members by user id (page with after_user_id). No phone numbers: members see
    each other's names only."""
    membership_get(user=user, room_id=room_id)
    rows = Membership.objects.filter(room_id=room_id, left_at__isnull=True,
                                     user_id__gt=after_user_id).select_related("user").order_by(
        "user_id")[:limit]
    return [MemberSummary(m.user_id, m.user.name, m.role, m.joined_at, m.last_read_seq)
            for m in rows]


def invite_list(*, user: User) -> list[PendingInvite]:
    """The user's held invites still waiting for someone to verify the number."""
    since = timezone.now() - timedelta(days=chat_setting("SONOR_CHAT_INVITE_TTL_DAYS"))
    return list(PendingInvite.objects.filter(
        inviter=user, resolved_at__isnull=True, cancelled_at__isnull=True,
        created_at__gte=since).order_by("-created_at"))


def user_visible_get(*, viewer: User, user_id: int) -> User:
    """The user `user_id` if `viewer` can already see them: they share or shared a room, or
    they invited the viewer.
    Anyone else is UserNotFound, exactly as an id no one has: user ids are sequential, and
    probing them must tell a caller nothing (not even that the id exists)."""
    user = None
    if user_id != viewer.pk:
        user = (User.objects.filter(
            pk=user_id, chat_memberships__room__memberships__user=viewer).first()
            or User.objects.filter(pk=user_id, chat_invites_sent__invitee=viewer).first())
    if user is None:
        raise UserNotFound()
    return user


def invitation_list(*, user: User) -> list[PendingInvite]:
    """Invitations waiting for the user's answer, newest first (not from users they
    blocked)."""
    since = timezone.now() - timedelta(days=chat_setting("SONOR_CHAT_INVITE_TTL_DAYS"))
    return list(PendingInvite.objects.filter(
        invitee=user, resolved_at__isnull=True, cancelled_at__isnull=True,
        declined_at__isnull=True, created_at__gte=since,
    ).exclude(inviter__in=Block.objects.filter(blocker=user).values("blocked"))
        .select_related("inviter", "room").order_by("-created_at"))


def block_list(*, user: User) -> list[Block]:
    return list(Block.objects.filter(blocker=user).select_related("blocked")
                .order_by("-created_at"))


# ---- presence ------------------------------------------------------------------------------

def chat_offline_members(*, room_id: int, exclude_user_id: int) -> list[int]:
    """Ids of the room's members, other than `exclude_user_id`, with no live socket in any
    process: the ones the push pipeline (category chat) should reach by FCM."""
    live_after = timezone.now() - timedelta(seconds=chat_setting("SONOR_CHAT_PRESENCE_TTL"))
    live = SocketPresence.objects.filter(user_id=OuterRef("user_id"), seen_at__gte=live_after)
    return list(
        Membership.objects.filter(room_id=room_id, left_at__isnull=True)
        .exclude(user_id=exclude_user_id).exclude(Exists(live))
        .order_by("user_id").values_list("user_id", flat=True))


def user_online(*, user_id: int) -> bool:
    live_after = timezone.now() - timedelta(seconds=chat_setting("SONOR_CHAT_PRESENCE_TTL"))
    return SocketPresence.objects.filter(user_id=user_id, seen_at__gte=live_after).exists()


# ---- data export ---------------------------------------------------------------------------

def chat_export(user: User) -> dict[str, Any]:
    """The user's part of chat in their data export (terms 4.2, 5.1): rooms, the messages they
    sent (deleted ones without text), their blocks, reports, the invites they sent and the
    invitations they received."""
    return {
        "rooms": [
            {"room": m.room_id, "kind": m.room.kind, "name": m.room.name, "role": m.role,
             "joined_at": m.joined_at, "left_at": m.left_at, "last_read_seq": m.last_read_seq}
            for m in Membership.objects.filter(user=user).select_related("room")
            .order_by("joined_at")
        ],
        "messages_sent": [
            {"room": e.room_id, "seq": e.seq, "text": e.text, "sent_at": e.created_at,
             "edited_at": e.edited_at, "deleted_at": e.deleted_at}
            for e in RoomEvent.objects.filter(sender=user, kind=RoomEvent.Kind.MESSAGE)
            .order_by("created_at", "pk")
        ],
        "blocks": [{"user": b.blocked_id, "created_at": b.created_at}
                   for b in Block.objects.filter(blocker=user)],
        "reports": [{"reported_user": r.reported_user_id, "reason": r.reason,
                     "created_at": r.created_at, "handled_at": r.handled_at}
                    for r in Report.objects.filter(reporter=user)],
        "invites": [{"phone": i.e164, "kind": i.kind, "created_at": i.created_at,
                     "resolved_at": i.resolved_at, "cancelled_at": i.cancelled_at}
                    for i in PendingInvite.objects.filter(inviter=user)],
        "invitations": [{"from_user": i.inviter_id, "kind": i.kind, "room": i.room_id,
                         "created_at": i.created_at, "accepted_at": i.resolved_at,
                         "declined_at": i.declined_at}
                        for i in PendingInvite.objects.filter(invitee=user)],
    }


def room_ids_by_user(*, user_ids: list[int]) -> dict[int, list[int]]:
    """The rooms each user is an active member of (new sockets follow them), in one query."""
    rooms: dict[int, list[int]] = {user_id: [] for user_id in user_ids}
    for user_id, room_id in Membership.objects.filter(
            user_id__in=user_ids, left_at__isnull=True).values_list("user_id", "room_id"):
        rooms[user_id].append(room_id)
    return rooms
