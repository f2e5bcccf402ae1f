"""Chat writes: rooms, members, messages, read state, blocks, reports, held invites, presence.

Every write to a room's stream allocates its seq with ONE statement that also checks the
actor's membership (and, for messages, the verified phone and a block), then inserts, in one
transaction; the room row's lock serialises the room's writers. Frames go out on commit.

    chat.send --> message_send --> resend? (room, sender, client_msg_id) row --> same event back
                       |  text_clean, pii_kinds, per-user throttle
                       +--> BEGIN; UPDATE room SET last_seq = last_seq + 1 WHERE member ...
                            RETURNING last_seq; INSERT event; COMMIT
                            --> room.push chat.message to group room.<id> (one Redis message
                                per process, written as is to each local socket)

Sockets send through messages_send_batch (chatserver/message_writer.py collects them): the same
steps for many sends in ONE transaction, one INSERT, one room.push per room.

A new member's sockets get `room.join` (with the events that added them) through the user's
own group and start following the room; a leaving member's stop after the frames saying so.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from pydantic import BaseModel

from chatserver.chat.config import chat_setting
from chatserver.chat.errors import (
    DirectRoomsLimit,
    InviteNotFound,
    MessageDeleted,
    MessageNotFound,
    NotAGroup,
    NotMember,
    NotYourMessage,
    PhoneNotVerified,
    PiiWarning,
    ReportInvalid,
    RoleForbidden,
    RoomFull,
    SelfChat,
    UserBlocked,
    UserNotFound,
)
from chatserver.chat.models import (
    Block,
    Membership,
    PendingInvite,
    Report,
    Room,
    RoomEvent,
    SocketPresence,
)
from chatserver.chat.push import chat_pushes_on_delete, chat_pushes_on_read
from chatserver.chat.selectors import (
    event_frame,
    invitation_frame,
    member_frame,
    message_frame,
    room_unread_count,
    user_visible_get,
)
from chatserver.chat.text import pii_kinds, text_clean
from chatserver.core import protocol
from chatserver.core.errors import AppError, InvalidInput, RateLimited
from chatserver.core.realtime import (
    publish_room_on_commit,
    publish_rooms_on_commit,
    publish_user_on_commit,
    room_join_on_commit,
)
from chatserver.core.throttle import throttle_check, throttle_check_many
from identity.domain import mobile_parse
from identity.models import PhoneNumber, User

log = logging.getLogger(__name__)

Role = Membership.Role
GROUP_NAME_MAX = 100
REPORT_REASON_MAX = 500

_ROOM_TABLE = Room._meta.db_table
_MEMBERSHIP_TABLE = Membership._meta.db_table
_BLOCK_TABLE = Block._meta.db_table
_PHONE_TABLE = PhoneNumber._meta.db_table


class _Unchanged(Exception):
    """Raised inside a transaction to roll it back (and give back its seq) when the request
    changes nothing; carries what to answer."""

    def __init__(self, value: object) -> None:
        super().__init__()
        self.value = value


# ---- seq allocation ------------------------------------------------------------------------

def _seq_allocate(*, room_id: int, actor_id: int, count: int = 1, require_phone: bool = False,
                  respect_blocks: bool = False) -> int | None:
    """Bump the room's head by `count` if `actor_id` is an active member (with a verified
    phone, and in a direct room not blocked by the other member, when asked); returns the new
    head, or None when a condition failed. Caller holds a transaction: the UPDATE takes the
    room row's lock until it ends."""
    sql = [
        f"UPDATE {_ROOM_TABLE} SET last_seq = last_seq + %s WHERE id = %s",
        f"AND EXISTS (SELECT 1 FROM {_MEMBERSHIP_TABLE} m WHERE m.room_id = %s"
        " AND m.user_id = %s AND m.left_at IS NULL)",
    ]
    params: list[object] = [count, room_id, room_id, actor_id]
    if require_phone:
        sql.append(f"AND EXISTS (SELECT 1 FROM {_PHONE_TABLE} p WHERE p.user_id = %s"
                   " AND p.released_at IS NULL)")
        params.append(actor_id)
    if respect_blocks:  # either way round, in direct rooms
        sql.append(
            f"AND (kind = 'group' OR NOT EXISTS (SELECT 1 FROM {_BLOCK_TABLE} b"
            f" JOIN {_MEMBERSHIP_TABLE} o ON o.room_id = %s"
            " AND ((b.blocker_id = o.user_id AND b.blocked_id = %s)"
            " OR (b.blocked_id = o.user_id AND b.blocker_id = %s))))")
        params.extend([room_id, actor_id, actor_id])
    sql.append("RETURNING last_seq")
    with connection.cursor() as cursor:
        cursor.execute(" ".join(sql), params)
        row = cursor.fetchone()
    return int(row[0]) if row else None


def _seq_allocate_or_raise(*, room_id: int, actor: User, count: int = 1,
                           require_phone: bool = False) -> int:
    seq = _seq_allocate(room_id=room_id, actor_id=actor.pk, count=count,
                        require_phone=require_phone)
    if seq is None:
        _allocation_failed(room_id=room_id, actor=actor, require_phone=require_phone)
        raise NotMember()
    return seq


def _allocation_failed(*, room_id: int, actor: User, require_phone: bool) -> None:
    """Say why an allocation failed (the slow path only); returns if the other member of the
    direct room blocked the actor (who is not told)."""
    if require_phone and not _has_verified_phone(actor):
        raise PhoneNotVerified()
    if not Membership.objects.filter(room_id=room_id, user=actor, left_at__isnull=True).exists():
        raise NotMember()
    if Block.objects.filter(blocker=actor, blocked__chat_memberships__room_id=room_id).exists():
        raise UserBlocked()


def _has_verified_phone(user: User) -> bool:
    return PhoneNumber.objects.filter(user=user, released_at__isnull=True).exists()


def _require_verified_phone(user: User) -> None:
    if not _has_verified_phone(user):
        raise PhoneNotVerified()


# ---- messages ------------------------------------------------------------------------------

def _message_by_client_id(*, room_id: int, sender_id: int, client_msg_id: str
                          ) -> RoomEvent | None:
    # No ordering (unlike first()): the unique index answers it directly.
    rows = list(RoomEvent.objects.filter(room_id=room_id, sender_id=sender_id,
                                         client_msg_id=client_msg_id)[:1])
    return rows[0] if rows else None


def _text_checked(text: str, *, confirm_pii: bool) -> str:
    clean = text_clean(text)
    if not confirm_pii:
        kinds = pii_kinds(clean)
        if kinds:
            raise PiiWarning(kinds)
    return clean


def _send_throttle_key(user: User) -> str:
    return f"chat-send:{user.pk}"


def _send_throttle(user: User) -> None:
    throttle_check(key=_send_throttle_key(user), limit=chat_setting("SONOR_CHAT_SEND_RATE"),
                   window_seconds=chat_setting("SONOR_CHAT_SEND_WINDOW"))


def message_send(*, sender: User, room_id: int, client_msg_id: str, text: str,
                 confirm_pii: bool = False) -> RoomEvent | None:
    """Store a message and publish it on commit. A resend with the same client_msg_id returns
    the stored event (same seq, nothing new). Returns None when the other member of a direct
    room blocked the sender: nothing is stored or delivered, and the sender is not told."""
    existing = _message_by_client_id(room_id=room_id, sender_id=sender.pk,
                                     client_msg_id=client_msg_id)
    if existing is not None:
        return existing
    clean = _text_checked(text, confirm_pii=confirm_pii)
    _send_throttle(sender)
    return _message_store(sender=sender, room_id=room_id, client_msg_id=client_msg_id,
                          text=clean)


def _message_store(*, sender: User, room_id: int, client_msg_id: str, text: str
                   ) -> RoomEvent | None:
    try:
        with transaction.atomic():
            event = _message_insert_locked(sender=sender, room_id=room_id,
                                           client_msg_id=client_msg_id, text=text)
            if event is None:
                return None
            event.save(force_insert=True)
            publish_room_on_commit(room_id, [message_frame(event)])
    except IntegrityError:
        # A concurrent resend of the same client_msg_id won; its transaction took the seq.
        existing = _message_by_client_id(room_id=room_id, sender_id=sender.pk,
                                         client_msg_id=client_msg_id)
        if existing is None:
            raise
        return existing
    return event


def _message_insert_locked(*, sender: User, room_id: int, client_msg_id: str, text: str
                           ) -> RoomEvent | None:
    """Allocate the message's seq (checking membership, phone and blocks) and return the
    unsaved event; None when held (blocked). Caller holds a transaction."""
    seq = _seq_allocate(room_id=room_id, actor_id=sender.pk, require_phone=True,
                        respect_blocks=True)
    if seq is None:
        _allocation_failed(room_id=room_id, actor=sender, require_phone=True)
        log.info("message from user %s to room %s held: blocked", sender.pk, room_id)
        return None
    return RoomEvent(room_id=room_id, seq=seq, kind=RoomEvent.Kind.MESSAGE, sender=sender,
                     client_msg_id=client_msg_id, text=text)


@dataclass(frozen=True)
class SendRequest:
    sender: User
    room_id: int
    client_msg_id: str
    text: str
    confirm_pii: bool = False

    @property
    def key(self) -> tuple[int, int, str]:
        return self.room_id, self.sender.pk, self.client_msg_id


SendOutcome = RoomEvent | None | AppError


def messages_send_batch(requests: list[SendRequest]) -> list[SendOutcome]:
    """message_send for many requests in one transaction: per request, what message_send
    returns, or the AppError it raises. A fixed number of statements whatever the batch's
    size: lock the rooms (in id order, the same in every process), check every sender at
    once, advance every room's seq by its count, one INSERT; then one room.push per room
    carries its messages in order after commit."""
    outcomes: list[SendOutcome] = [None] * len(requests)
    stored = _messages_by_client_ids(requests)
    first_of: dict[tuple[int, int, str], int] = {}
    repeats: list[tuple[int, int]] = []
    to_store: list[tuple[int, str]] = []
    for index, request in enumerate(requests):
        if request.key in stored:
            outcomes[index] = stored[request.key]
        elif request.key in first_of:  # sent twice in the same batch
            repeats.append((index, first_of[request.key]))
        else:
            try:
                clean = _text_checked(request.text, confirm_pii=request.confirm_pii)
            except AppError as exc:
                outcomes[index] = exc
                continue
            first_of[request.key] = index
            to_store.append((index, clean))
    limited = throttle_check_many(
        keys=[_send_throttle_key(requests[index].sender) for index, _ in to_store],
        limit=chat_setting("SONOR_CHAT_SEND_RATE"),
        window_seconds=chat_setting("SONOR_CHAT_SEND_WINDOW"))
    for (index, _), refusal in zip(to_store, limited, strict=True):
        if refusal is not None:
            outcomes[index] = refusal
    to_store = [item for item, refusal in zip(to_store, limited, strict=True) if refusal is None]
    try:
        with transaction.atomic():
            events: list[tuple[int, RoomEvent]] = []
            _rooms_lock(sorted({requests[index].room_id for index, _ in to_store}))
            allowed = _senders_allowed(
                {(requests[index].room_id, requests[index].sender.pk) for index, _ in to_store})
            counts: dict[int, int] = {}
            for index, clean in to_store:  # arrival order: the seq order within each room
                request = requests[index]
                if (request.room_id, request.sender.pk) not in allowed:
                    try:
                        _allocation_failed(room_id=request.room_id, actor=request.sender,
                                           require_phone=True)
                        log.info("message from user %s to room %s held: blocked",
                                 request.sender.pk, request.room_id)
                    except AppError as exc:
                        outcomes[index] = exc
                    continue
                counts[request.room_id] = counts.get(request.room_id, 0) + 1
                events.append((index, RoomEvent(
                    room_id=request.room_id, kind=RoomEvent.Kind.MESSAGE,
                    sender=request.sender, client_msg_id=request.client_msg_id, text=clean)))
            next_seq = {room_id: head - counts[room_id] + 1
                        for room_id, head in _room_heads_bump(counts).items()}
            for _, event in events:
                event.seq = next_seq[event.room_id]
                next_seq[event.room_id] += 1
            RoomEvent.objects.bulk_create([event for _, event in events])
            for index, event in events:
                outcomes[index] = event
            _publish_messages_on_commit([event for _, event in events])
    except IntegrityError:
        # Another process stored one of these client_msg_ids meanwhile: one at a time.
        for index, clean in to_store:
            request = requests[index]
            try:
                outcomes[index] = _message_store(
                    sender=request.sender, room_id=request.room_id,
                    client_msg_id=request.client_msg_id, text=clean)
            except AppError as exc:
                outcomes[index] = exc
    for index, first in repeats:
        outcomes[index] = outcomes[first]
    return outcomes


def _rooms_lock(room_ids: list[int]) -> None:
    """Lock the rooms' rows in id order, so that batches of several processes never wait on
    each other in a circle (SQLite has one writer at a time anyway)."""
    if room_ids and connection.vendor != "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id FROM {_ROOM_TABLE} WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
                [room_ids])


def _senders_allowed(pairs: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """The (room, sender) pairs that may send, by _seq_allocate's rule for messages (active
    member, verified phone, in a direct room no block either way), in one query. Caller
    holds the rooms' locks."""
    if not pairs:
        return set()
    listed = ", ".join(["(%s, %s)"] * len(pairs))
    sql = (
        f"SELECT m.room_id, m.user_id FROM {_MEMBERSHIP_TABLE} m"
        f" JOIN {_ROOM_TABLE} r ON r.id = m.room_id"
        f" WHERE (m.room_id, m.user_id) IN ({listed}) AND m.left_at IS NULL"
        f" AND EXISTS (SELECT 1 FROM {_PHONE_TABLE} p WHERE p.user_id = m.user_id"
        " AND p.released_at IS NULL)"
        f" AND (r.kind = 'group' OR NOT EXISTS (SELECT 1 FROM {_BLOCK_TABLE} b"
        f" JOIN {_MEMBERSHIP_TABLE} o ON o.room_id = m.room_id"
        " AND ((b.blocker_id = o.user_id AND b.blocked_id = m.user_id)"
        " OR (b.blocked_id = o.user_id AND b.blocker_id = m.user_id))))")
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for pair in sorted(pairs) for value in pair])
        return {(int(room_id), int(user_id)) for room_id, user_id in cursor.fetchall()}


def _room_heads_bump(counts: dict[int, int]) -> dict[int, int]:
    """Advance each room's last_seq by its count in one statement; the new heads by room.
    Caller holds the rooms' locks."""
    if not counts:
        return {}
    listed = ", ".join(["(%s, %s)"] * len(counts))
    sql = (f"WITH v (id, k) AS (VALUES {listed})"
           f" UPDATE {_ROOM_TABLE} SET last_seq = last_seq"
           f" + (SELECT v.k FROM v WHERE v.id = {_ROOM_TABLE}.id)"
           f" WHERE id IN (SELECT v.id FROM v) RETURNING id, last_seq")
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for item in sorted(counts.items()) for value in item])
        return {int(room_id): int(head) for room_id, head in cursor.fetchall()}


def _messages_by_client_ids(requests: list[SendRequest]
                            ) -> dict[tuple[int, int, str], RoomEvent]:
    if not requests:
        return {}
    keys = {request.key for request in requests}
    rows = RoomEvent.objects.filter(
        room_id__in={key[0] for key in keys}, sender_id__in={key[1] for key in keys},
        client_msg_id__in={key[2] for key in keys})
    return {key: row for row in rows
            if (key := (row.room_id, row.sender_id, row.client_msg_id or "")) in keys}


def _publish_messages_on_commit(events: list[RoomEvent]) -> None:
    by_room: dict[int, list[BaseModel]] = {}
    for event in events:  # in seq order within each room
        by_room.setdefault(event.room_id, []).append(message_frame(event))
    publish_rooms_on_commit(list(by_room.items()))


def _message_in_room(*, room_id: int, message_id: int) -> RoomEvent:
    target = RoomEvent.objects.filter(pk=message_id, room_id=room_id,
                                      kind=RoomEvent.Kind.MESSAGE).first()
    if target is None:
        raise MessageNotFound()
    return target


def message_edit(*, user: User, room_id: int, message_id: int, text: str,
                 confirm_pii: bool = False) -> RoomEvent | None:
    """Change the text of one's own message; an `edit` event in the stream says so. None when
    held (direct room, blocked by the other member), as for message_send."""
    clean = _text_checked(text, confirm_pii=confirm_pii)
    _send_throttle(user)
    with transaction.atomic():
        seq = _seq_allocate(room_id=room_id, actor_id=user.pk, require_phone=True,
                            respect_blocks=True)
        if seq is None:
            _allocation_failed(room_id=room_id, actor=user, require_phone=True)
            return None
        target = _message_in_room(room_id=room_id, message_id=message_id)
        if target.sender_id != user.pk:
            raise NotYourMessage()
        if target.deleted_at is not None:
            raise MessageDeleted()
        now = timezone.now()
        target.text = clean
        target.edited_at = now
        target.save(update_fields=["text", "edited_at"])
        event = RoomEvent.objects.create(
            room_id=room_id, seq=seq, kind=RoomEvent.Kind.EDIT, sender=user, target=target,
            text=clean, created_at=now)
        event.target = target
        publish_room_on_commit(room_id, [event_frame(event)])
    return event


def message_delete(*, user: User, room_id: int, message_id: int) -> RoomEvent:
    """Delete a message for everyone: a tombstone stays (seq, sender, time); its text is
    removed from the message, from its stored edits and from the push ledger. One's own
    message, or any message of a group one administers. Deleting again returns the first
    deletion."""
    target = _message_in_room(room_id=room_id, message_id=message_id)
    if target.deleted_at is not None:
        previous = RoomEvent.objects.filter(target=target, kind=RoomEvent.Kind.DELETE).first()
        if previous is not None and _is_active_member(room_id=room_id, user_id=user.pk):
            return previous
    with transaction.atomic():
        seq = _seq_allocate_or_raise(room_id=room_id, actor=user)
        target = _message_in_room(room_id=room_id, message_id=message_id)
        if target.deleted_at is not None:
            raise MessageDeleted()
        if target.sender_id != user.pk:
            room = Room.objects.get(pk=room_id)
            role = _active_membership(room_id=room_id, user_id=user.pk).role
            if room.kind != Room.Kind.GROUP or role not in (Role.OWNER, Role.ADMIN):
                raise NotYourMessage()
        now = timezone.now()
        # The message row first, then its edits: the push planner locks events in that
        # (id) order too, so the two never wait for each other in a circle.
        target.text = ""
        target.deleted_at = now
        target.save(update_fields=["text", "deleted_at"])
        RoomEvent.objects.filter(target=target, kind=RoomEvent.Kind.EDIT).update(text="")
        chat_pushes_on_delete(room_id=room_id, seq=target.seq)
        event = RoomEvent.objects.create(
            room_id=room_id, seq=seq, kind=RoomEvent.Kind.DELETE, sender=user, target=target,
            created_at=now)
        event.target = target
        publish_room_on_commit(room_id, [event_frame(event)])
    return event


# ---- read state and typing -----------------------------------------------------------------

def room_read(*, user: User, room_id: int, seq: int) -> int:
    """Mark the room read up to `seq` (never backwards; capped at the room's head). Returns
    the unread count, which every device of the user gets as `chat.unread`; the other members
    get a receipt (an aggregate count, at most every few seconds, in large groups)."""
    with transaction.atomic():
        room = Room.objects.filter(pk=room_id).values("last_seq", "member_count").first()
        if room is None:
            raise NotMember()
        seq = min(seq, room["last_seq"])
        read_before = _active_membership(room_id=room_id, user_id=user.pk).last_read_seq
        updated = Membership.objects.filter(
            room_id=room_id, user=user, left_at__isnull=True, last_read_seq__lt=seq,
        ).update(last_read_seq=seq)
        membership = _active_membership(room_id=room_id, user_id=user.pk)
        count = room_unread_count(room_id=room_id, user_id=user.pk,
                                  last_read_seq=membership.last_read_seq)
        if not updated:
            return count
        chat_pushes_on_read(user_id=user.pk, room_id=room_id, after_seq=read_before, seq=seq)
        publish_user_on_commit(user.pk, protocol.ChatUnread(
            room=room_id, count=count, last_read_seq=membership.last_read_seq))
        if room["member_count"] <= chat_setting("SONOR_CHAT_RECEIPTS_AGGREGATE_ABOVE"):
            publish_room_on_commit(room_id, [protocol.ChatReceipt(room=room_id, user=user.pk,
                                                                  seq=seq)])
        elif cache.add(f"chat-receipts:{room_id}", 1,
                       timeout=chat_setting("SONOR_CHAT_RECEIPTS_AGGREGATE_SECONDS")):
            read_by = Membership.objects.filter(room_id=room_id, left_at__isnull=True,
                                                last_read_seq__gte=seq).count()
            publish_room_on_commit(room_id, [protocol.ChatReceipts(
                room=room_id, seq=seq, read_by=read_by, members=room["member_count"])])
    return count


def room_typing_allowed(*, user: User, room_id: int) -> bool:
    """Whether a typing frame from `user` may go to the room: raises NotMember; False when
    the other member of a direct room blocked the user (who is not told)."""
    kind = Room.objects.filter(pk=room_id, memberships__user=user,
                               memberships__left_at__isnull=True).values_list("kind", flat=True
                                                                              ).first()
    if kind is None:
        raise NotMember()
    if kind == Room.Kind.DIRECT:
        return not Block.objects.filter(
            blocked=user, blocker__chat_memberships__room_id=room_id).exists()
    return True


# ---- rooms ---------------------------------------------------------------------------------

def _direct_key(a: int, b: int) -> str:
    return f"{min(a, b)}:{max(a, b)}"


def _active_membership(*, room_id: int, user_id: int) -> Membership:
    membership = Membership.objects.filter(room_id=room_id, user_id=user_id,
                                           left_at__isnull=True).first()
    if membership is None:
        raise NotMember()
    return membership


def _is_active_member(*, room_id: int, user_id: int) -> bool:
    return Membership.objects.filter(room_id=room_id, user_id=user_id,
                                     left_at__isnull=True).exists()


def _verified_owner(e164: str) -> User | None:
    """The active user who holds `e164` now, if any."""
    phone = PhoneNumber.objects.select_related("user").filter(
        e164=e164, released_at__isnull=True).first()
    if phone is None or not phone.user.is_active:
        return None
    return phone.user


def _blocked(*, blocker_id: int, blocked_id: int) -> bool:
    return Block.objects.filter(blocker_id=blocker_id, blocked_id=blocked_id).exists()


def _is_new_account(user: User) -> bool:
    age = timezone.now() - user.created_at
    return age < timedelta(days=chat_setting("SONOR_CHAT_NEW_ACCOUNT_DAYS"))


def _new_direct_allowed(user: User) -> None:
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


def _new_account_adds(user: User, count: int) -> None:
    if count and _is_new_account(user):
        for _ in range(count):
            throttle_check(key=f"chat-adds:{user.pk}",
                           limit=chat_setting("SONOR_CHAT_NEW_ACCOUNT_ADDS_PER_DAY"),
                           window_seconds=86400)


def _room_create(*, kind: str, name: str, creator: User, members: list[tuple[User, str]],
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
    frames = [event_frame(event) for event in events]
    for user, _ in members:
        room_join_on_commit(user.pk, room.pk, frames)
    log.info("%s room %s created by user %s with %s members", kind, room.pk, creator.pk,
             len(members))
    return room


def _discovery_throttle(user: User, count: int) -> None:
    """Looking up numbers whose owners are not yet contacts is contact discovery: counted
    per account (every account, not only new ones), one per number, before anything about
    the numbers is answered."""
    for _ in range(count):
        throttle_check(key=f"chat-discovery:{user.pk}",
                       limit=chat_setting("SONOR_CHAT_DISCOVERY_PER_HOUR"), window_seconds=3600)


def _contacts(user: User, others: list[User]) -> set[int]:
    """Ids among `others` who have talked with `user`: they share a direct room (which exists
    only once both said yes)."""
    keys = {_direct_key(user.pk, other.pk): other.pk for other in others}
    return {keys[key] for key in Room.objects.filter(direct_key__in=list(keys))
            .values_list("direct_key", flat=True)}


def room_direct_get_or_create(*, user: User, phone: str) -> Room | PendingInvite:
    """The direct room of `user` and whoever verified `phone`, if they have talked before (the
    same room when asked again). Otherwise a message request: an invitation that the owner
    of the number accepts or declines (or, for a number no one has verified, one held until
    someone does). The caller cannot tell these apart: the answer names no one until the
    other side says yes, and a user who blocked the caller or declined is not revealed.
    Asking for a number whose owner already asked the caller accepts their request."""
    _require_verified_phone(user)
    e164 = mobile_parse(phone)
    peer = _verified_owner(e164)
    if peer is not None and peer.pk == user.pk:
        raise SelfChat()
    if peer is not None:
        room = Room.objects.filter(direct_key=_direct_key(user.pk, peer.pk)).first()
        if room is not None:
            _known_phone_set(room=room, user=user, e164=e164)
            return room
        if _blocked(blocker_id=user.pk, blocked_id=peer.pk):
            raise UserBlocked()
    _discovery_throttle(user, 1)
    if peer is not None and not _blocked(blocker_id=peer.pk, blocked_id=user.pk):
        theirs = _invitations_open().filter(inviter=peer, invitee=user,
                                            kind=PendingInvite.Kind.DIRECT).first()
        if theirs is not None:  # they asked first: asking back is saying yes
            room = invitation_accept(user=user, invitation_id=theirs.pk)
            _known_phone_set(room=room, user=user, e164=e164)
            return room
    return _invite_hold(inviter=user, e164=e164, kind=PendingInvite.Kind.DIRECT, room=None,
                        invitee=peer)


def _known_phone_set(*, room: Room, user: User, e164: str) -> None:
    """`user` typed `e164` (which belongs to the other member now) to reach this room."""
    Membership.objects.filter(room=room, user=user).exclude(known_phone=e164).update(
        known_phone=e164)


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
    _require_verified_phone(creator)
    clean_name = _group_name(name)
    if len(phones) > chat_setting("SONOR_CHAT_GROUP_INITIAL_MAX"):
        raise InvalidInput("Too many phone numbers for one request; add the rest later.")
    e164s = list(dict.fromkeys(mobile_parse(phone) for phone in phones))
    owners = {p.e164: p.user for p in PhoneNumber.objects.select_related("user").filter(
        e164__in=e164s, released_at__isnull=True)}
    blockers = set(Block.objects.filter(blocked=creator, blocker__in=owners.values())
                   .values_list("blocker_id", flat=True))
    contacts = _contacts(creator, list(owners.values()))
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
    _discovery_throttle(creator, len(invited))
    _new_account_adds(creator, len(members) + len(invited))
    if len(members) + 1 > chat_setting("SONOR_CHAT_MEMBER_LIMIT"):
        raise RoomFull()
    with transaction.atomic():
        room = _room_create(kind=Room.Kind.GROUP, name=clean_name, creator=creator,
                            members=[(creator, Role.OWNER), *((m, Role.MEMBER) for m in members)])
        pending = [_invite_hold(inviter=creator, e164=e164, kind=PendingInvite.Kind.GROUP,
                                room=room, invitee=owner) for e164, owner in invited]
    return GroupCreated(room=room, pending=pending)


def _group_locked(*, room_id: int, actor: User, roles: tuple[str, ...],
                  require_phone: bool = False, count: int = 1) -> tuple[Room, Membership, int]:
    """Allocate `count` seqs as `actor` in group `room_id` (taking the room lock) and check
    the actor's role; returns the room, the actor's membership and the new head."""
    seq = _seq_allocate_or_raise(room_id=room_id, actor=actor, count=count,
                                 require_phone=require_phone)
    room = Room.objects.get(pk=room_id)
    if room.kind != Room.Kind.GROUP:
        raise NotAGroup()
    membership = _active_membership(room_id=room_id, user_id=actor.pk)
    if membership.role not in roles:
        raise RoleForbidden()
    return room, membership, seq


def _member_event(*, room_id: int, seq: int, subject: User, action: str, role: str,
                  by: User | None, now: datetime) -> protocol.ChatMember:
    event = RoomEvent.objects.create(
        room_id=room_id, seq=seq, kind=RoomEvent.Kind.MEMBER, sender=by, subject=subject,
        action=action, role=role, created_at=now)
    return member_frame(event, subject_name=subject.name)


def _member_join_locked(*, room: Room, seq: int, user: User, by: User) -> Membership:
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
    frame = _member_event(room_id=room.pk, seq=seq, subject=user, action="joined",
                          role=Role.MEMBER, by=by, now=now)
    publish_room_on_commit(room.pk, [frame])  # the members so far
    room_join_on_commit(user.pk, room.pk, [frame])  # the new member's sockets
    return membership


def group_member_add(*, actor: User, room_id: int, phone: str) -> Membership | PendingInvite:
    """An admin adds a contact of theirs (someone they share a direct room with) who
    verified `phone`; anyone else gets an invitation to the group (held, for a number no one
    has verified). Adding a member again changes nothing. Plain members are refused before
    the number is looked at: they cannot test who is in the group."""
    actor_membership = _active_membership(room_id=room_id, user_id=actor.pk)
    room = Room.objects.get(pk=room_id)
    if room.kind != Room.Kind.GROUP:
        raise NotAGroup()
    if actor_membership.role not in (Role.OWNER, Role.ADMIN):
        raise RoleForbidden()
    _require_verified_phone(actor)
    e164 = mobile_parse(phone)
    target = _verified_owner(e164)
    if target is not None and target.pk == actor.pk:
        raise SelfChat()
    if target is not None:
        existing = Membership.objects.filter(room_id=room_id, user=target,
                                             left_at__isnull=True).first()
        if existing is not None:
            return existing
    if (target is None or _blocked(blocker_id=target.pk, blocked_id=actor.pk)
            or not _contacts(actor, [target])):
        _discovery_throttle(actor, 1)
        _new_account_adds(actor, 1)
        return _invite_hold(inviter=actor, e164=e164, kind=PendingInvite.Kind.GROUP, room=room,
                            invitee=target)
    _new_account_adds(actor, 1)
    try:
        with transaction.atomic():
            room, _, seq = _group_locked(room_id=room_id, actor=actor, require_phone=True,
                                         roles=(Role.OWNER, Role.ADMIN))
            current = Membership.objects.filter(room=room, user=target,
                                                left_at__isnull=True).first()
            if current is not None:
                raise _Unchanged(current)
            return _member_join_locked(room=room, seq=seq, user=target, by=actor)
    except _Unchanged as unchanged:
        assert isinstance(unchanged.value, Membership)
        return unchanged.value


def _member_leave_locked(*, room: Room, seq: int, membership: Membership, action: str,
                         by: User) -> protocol.ChatMember:
    now = timezone.now()
    membership.left_at = now
    membership.left_seq = seq
    membership.save(update_fields=["left_at", "left_seq"])
    Room.objects.filter(pk=room.pk).update(member_count=F("member_count") - 1)
    return _member_event(room_id=room.pk, seq=seq, subject=membership.user, action=action,
                         role=membership.role, by=by, now=now)


def group_member_remove(*, actor: User, room_id: int, user_id: int) -> None:
    """An owner removes anyone; an admin removes members (not admins or the owner)."""
    _user_route_throttle(actor)
    if user_id == actor.pk:
        room_leave(user=actor, room_id=room_id)
        return
    with transaction.atomic():
        room, actor_membership, seq = _group_locked(room_id=room_id, actor=actor,
                                                    roles=(Role.OWNER, Role.ADMIN))
        target = Membership.objects.select_related("user").filter(
            room=room, user_id=user_id, left_at__isnull=True).first()
        if target is None:
            raise NotMember("That user is not a member of this room.")
        if target.role == Role.OWNER or (actor_membership.role == Role.ADMIN
                                         and target.role == Role.ADMIN):
            raise RoleForbidden()
        frame = _member_leave_locked(room=room, seq=seq, membership=target, action="removed",
                                     by=actor)
        publish_room_on_commit(room.pk, [frame], leave_user_ids=(user_id,))


def group_rename(*, actor: User, room_id: int, name: str) -> Room:
    clean = _group_name(name)
    with transaction.atomic():
        room, _, seq = _group_locked(room_id=room_id, actor=actor,
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
    _user_route_throttle(actor)
    if role not in Role.values:
        raise InvalidInput("The role is owner, admin or member.")
    if user_id == actor.pk:
        raise RoleForbidden("You cannot change your own role; hand ownership on instead.")
    try:
        with transaction.atomic():
            count = 2 if role == Role.OWNER else 1
            room, actor_membership, head = _group_locked(
                room_id=room_id, actor=actor, roles=(Role.OWNER, Role.ADMIN), count=count)
            target = Membership.objects.select_related("user").filter(
                room=room, user_id=user_id, left_at__isnull=True).first()
            if target is None:
                raise NotMember("That user is not a member of this room.")
            if target.role == role:
                raise _Unchanged(target)
            if actor_membership.role == Role.ADMIN and not (
                    target.role == Role.MEMBER and role == Role.ADMIN):
                raise RoleForbidden()
            now = timezone.now()
            seq = head - count + 1
            target.role = role
            target.save(update_fields=["role"])
            frames = [_member_event(room_id=room_id, seq=seq, subject=target.user,
                                    action="role", role=role, by=actor, now=now)]
            if role == Role.OWNER:
                actor_membership.role = Role.ADMIN
                actor_membership.save(update_fields=["role"])
                frames.append(_member_event(room_id=room_id, seq=seq + 1, subject=actor,
                                            action="role", role=Role.ADMIN, by=actor, now=now))
            publish_room_on_commit(room_id, frames)
            return target
    except _Unchanged as unchanged:
        assert isinstance(unchanged.value, Membership)
        return unchanged.value


def room_leave(*, user: User, room_id: int) -> None:
    """Leave a group. An owner who leaves hands ownership to the longest-standing admin, else
    to the longest-standing member. Direct rooms are not left (block the user instead)."""
    with transaction.atomic():
        room, membership, seq = _group_locked(
            room_id=room_id, actor=user, roles=(Role.OWNER, Role.ADMIN, Role.MEMBER))
        frames: list[protocol.ChatMember] = []
        if membership.role == Role.OWNER:
            others = Membership.objects.select_related("user").filter(
                room=room, left_at__isnull=True).exclude(user=user).order_by("joined_at", "pk")
            successor = others.filter(role=Role.ADMIN).first() or others.first()
            if successor is not None:
                successor.role = Role.OWNER
                successor.save(update_fields=["role"])
                frames.append(_member_event(room_id=room_id, seq=seq, subject=successor.user,
                                            action="role", role=Role.OWNER, by=user,
                                            now=timezone.now()))
                seq = _seq_allocate_or_raise(room_id=room_id, actor=user)
        membership.user = user
        frames.append(_member_leave_locked(room=room, seq=seq, membership=membership,
                                           action="left", by=user))
        publish_room_on_commit(room_id, frames, leave_user_ids=(user.pk,))


# ---- invitations ---------------------------------------------------------------------------

def _invitations_open() -> Any:
    """Invitations nobody has answered, cancelled or let expire (declined ones included:
    to their inviter those still look open)."""
    ttl = timedelta(days=chat_setting("SONOR_CHAT_INVITE_TTL_DAYS"))
    return PendingInvite.objects.filter(resolved_at__isnull=True, cancelled_at__isnull=True,
                                        created_at__gte=timezone.now() - ttl)


def _invite_hold(*, inviter: User, e164: str, kind: str, room: Room | None,
                 invitee: User | None) -> PendingInvite:
    """The inviter's open invitation to `e164` (the same one when asked again), waiting for
    `invitee` (the number's owner now) or, if none, for someone to verify the number."""
    open_invites = _invitations_open().filter(inviter=inviter)
    existing = open_invites.filter(e164=e164, kind=kind, room=room).first()
    if existing is not None:
        return existing
    if kind == PendingInvite.Kind.DIRECT:
        _new_direct_allowed(inviter)
    if open_invites.count() >= chat_setting("SONOR_CHAT_OPEN_INVITES_MAX"):
        raise RateLimited(3600, "Too many invites are waiting; cancel some first.")
    invite = PendingInvite.objects.create(inviter=inviter, e164=e164, kind=kind, room=room,
                                          invitee=invitee)
    if invitee is not None:
        _tell_invited(invite)
    log.info("invite %s to %s****", invite.pk, e164[:-4])
    return invite


def _tell_invited(invite: PendingInvite) -> None:
    """The invitee learns of the invitation live (`chat.invitation`) and in the inbox (a push
    when offline), unless they blocked the inviter."""
    from notify.services import notification_create  # notify builds on chatserver

    invitee, inviter = invite.invitee, invite.inviter
    assert invitee is not None
    if _blocked(blocker_id=invitee.pk, blocked_id=inviter.pk):
        return
    publish_user_on_commit(invitee.pk, invitation_frame(invite))
    who = inviter.name or "Иргэн"
    if invite.kind == PendingInvite.Kind.DIRECT:
        title = f"{who} тантай чатлахыг хүсэж байна"
        body = f"{who} тантай чатлахыг хүсэж байна. Зөвшөөрөх эсвэл татгалзана уу."
    else:
        group_name = invite.room.name if invite.room else ""
        title = f"{who} таныг «{group_name}» бүлэгт урьж байна"
        body = f"{who} таныг «{group_name}» бүлгийн чатад урьж байна. Зөвшөөрөх эсвэл " \
               "татгалзана уу."
    notification_create(user=invitee, category="chat", title=title[:200], body=body)


def invite_cancel(*, user: User, invite_id: int) -> None:
    updated = PendingInvite.objects.filter(
        pk=invite_id, inviter=user, resolved_at__isnull=True, cancelled_at__isnull=True,
    ).update(cancelled_at=timezone.now())
    if not updated:
        raise InviteNotFound()


def _invitation_of(*, user: User, invitation_id: int) -> PendingInvite:
    invite = _invitations_open().select_related("inviter", "room").filter(
        pk=invitation_id, invitee=user, declined_at__isnull=True).first()
    if invite is None or _blocked(blocker_id=user.pk, blocked_id=invite.inviter_id):
        raise InviteNotFound()
    return invite


def invitation_accept(*, user: User, invitation_id: int) -> Room:
    """Say yes: a direct room with the inviter (who now sees the user's name), or a place in
    the group (added by the inviter, who must still administer it). An invitation that can
    no longer be honoured (inviter gone or blocked, no longer an admin, group full) is
    closed and answered InviteNotFound."""
    _require_verified_phone(user)
    done = PendingInvite.objects.select_related("room").filter(
        pk=invitation_id, invitee=user, resolved_user=user, room__isnull=False).first()
    if done is not None and done.room is not None:  # accepted already (a retry)
        return done.room
    invite = _invitation_of(user=user, invitation_id=invitation_id)
    inviter = invite.inviter
    room: Room | None = None
    try:
        with transaction.atomic():
            usable = (inviter.is_active and _has_verified_phone(inviter)
                      and not _blocked(blocker_id=inviter.pk, blocked_id=user.pk))
            if usable and invite.kind == PendingInvite.Kind.DIRECT:
                key = _direct_key(inviter.pk, user.pk)
                room = Room.objects.filter(direct_key=key).first()
                if room is None:
                    room = _room_create(kind=Room.Kind.DIRECT, name="", creator=inviter,
                                        direct_key=key, known_phone=invite.e164,
                                        members=[(inviter, Role.MEMBER), (user, Role.MEMBER)])
                else:
                    _known_phone_set(room=room, user=inviter, e164=invite.e164)
            elif usable and invite.room is not None:
                room, _, seq = _group_locked(room_id=invite.room.pk, actor=inviter,
                                             roles=(Role.OWNER, Role.ADMIN))
                if not _is_active_member(room_id=room.pk, user_id=user.pk):
                    _member_join_locked(room=room, seq=seq, user=user, by=inviter)
                else:
                    raise _Unchanged(None)
    except _Unchanged:
        pass
    except IntegrityError:  # the direct room was just created by the other side
        room = Room.objects.get(direct_key=_direct_key(inviter.pk, user.pk))
    except (NotMember, RoleForbidden, RoomFull, NotAGroup) as exc:
        log.info("group invite %s closed: %s", invite.pk, type(exc).__name__)
        room = None
    PendingInvite.objects.filter(pk=invite.pk).update(
        resolved_at=timezone.now(), resolved_user=user, room=room)
    if room is None:
        raise InviteNotFound("The invitation can no longer be accepted.")
    return room


def invitation_decline(*, user: User, invitation_id: int) -> None:
    """Say no. The inviter is not told: their invite looks pending until it expires."""
    invite = _invitation_of(user=user, invitation_id=invitation_id)
    PendingInvite.objects.filter(pk=invite.pk).update(declined_at=timezone.now())


def invites_resolve(*, user: User, e164: str) -> list[PendingInvite]:
    """`user` just verified `e164`: the invitations held for the number now wait for them
    to accept or decline (they are told who invited them)."""
    invites = list(_invitations_open().select_related("inviter", "room").filter(
        e164=e164, invitee__isnull=True).exclude(inviter=user).order_by("created_at"))
    for invite in invites:
        try:
            with transaction.atomic():
                invite.invitee = user
                invite.save(update_fields=["invitee"])
                _tell_invited(invite)
        except Exception:  # a chat problem must never fail the phone verification
            log.exception("invite %s could not be passed on", invite.pk)
    return invites


def invites_on_phone_verified(sender: object, *, user: User, e164: str, **kwargs: object
                              ) -> None:
    """identity.signals.phone_verified receiver (connected in chatserver.apps)."""
    invites_resolve(user=user, e164=e164)


# ---- blocks and reports --------------------------------------------------------------------

def _user_route_throttle(user: User) -> None:
    """Requests that name a user id are counted per account (with user_visible_get, probing
    ids learns nothing; the limit keeps it slow as well)."""
    throttle_check(key=f"chat-user-routes:{user.pk}",
                   limit=chat_setting("SONOR_CHAT_USER_ROUTES_PER_HOUR"), window_seconds=3600)


def user_block(*, blocker: User, user_id: int) -> Block:
    """From now on `user_id` gets no new direct room with `blocker` and their messages and
    typing in it are held; they are not told. (In groups, clients hide blocked users.) Only
    a user the blocker can see (user_visible_get) can be blocked; others are UserNotFound."""
    _user_route_throttle(blocker)
    user_visible_get(viewer=blocker, user_id=user_id)
    block, _ = Block.objects.get_or_create(blocker=blocker, blocked_id=user_id)
    return block


def user_unblock(*, blocker: User, user_id: int) -> None:
    """Lift a block; invitations the blocked user sent meanwhile show again."""
    _user_route_throttle(blocker)
    deleted, _ = Block.objects.filter(blocker=blocker, blocked_id=user_id).delete()
    if not deleted:
        raise UserNotFound("You have not blocked this user.")


def report_create(*, reporter: User, reason: str, message_id: int | None = None,
                  user_id: int | None = None) -> Report:
    """Report a message (a copy of its text is kept for staff, even if it is deleted later)
    or a user to the staff queue. Only messages and users one can see can be reported."""
    reason = (reason or "").strip()
    if (message_id is None) == (user_id is None) or not reason:
        raise ReportInvalid()
    if len(reason) > REPORT_REASON_MAX:
        raise InvalidInput(f"A reason is at most {REPORT_REASON_MAX} characters.")
    throttle_check(key=f"chat-report:{reporter.pk}",
                   limit=chat_setting("SONOR_CHAT_REPORTS_PER_HOUR"), window_seconds=3600)
    if message_id is not None:
        event = RoomEvent.objects.select_related("sender").filter(
            pk=message_id, kind=RoomEvent.Kind.MESSAGE).first()
        membership = event and Membership.objects.filter(
            room_id=event.room_id, user=reporter, left_at__isnull=True,
            joined_seq__lte=event.seq).first()
        if event is None or membership is None or event.sender is None:
            raise MessageNotFound()
        if event.sender_id == reporter.pk:
            raise ReportInvalid("You cannot report your own message.")
        report = Report.objects.create(reporter=reporter, reported_user=event.sender,
                                       event=event, room_id=event.room_id, text=event.text,
                                       reason=reason)
    else:
        assert user_id is not None
        _user_route_throttle(reporter)
        user_visible_get(viewer=reporter, user_id=user_id)
        report = Report.objects.create(reporter=reporter, reported_user_id=user_id,
                                       reason=reason)
    log.warning("chat report %s by user %s against user %s", report.pk, reporter.pk,
                report.reported_user_id)
    return report


def report_handle(*, report: Report, staff: User, resolution: str) -> Report:
    report.handled_at = timezone.now()
    report.handled_by = staff
    report.resolution = resolution[:200]
    report.save(update_fields=["handled_at", "handled_by", "resolution"])
    return report


# ---- presence ------------------------------------------------------------------------------

def chat_presence_apply(*, opened: list[tuple[str, int, int]], seen: list[str],
                        closed: list[str]) -> None:
    """Presence of many sockets in one transaction (each process collects them for about a
    second: chatserver/consumers.py PresenceBook): `opened` (socket name, user id, session
    id) are live from now, `seen` talked, `closed` are gone. Stale rows of the opening users
    (a process that died) go too."""
    now = timezone.now()
    stale = now - timedelta(seconds=chat_setting("SONOR_CHAT_PRESENCE_TTL"))
    with transaction.atomic():
        if opened:
            SocketPresence.objects.filter(user_id__in={user_id for _, user_id, _ in opened},
                                          seen_at__lt=stale).delete()
            SocketPresence.objects.bulk_create(
                [SocketPresence(channel_name=name, user_id=user_id, session_id=session_id,
                                connected_at=now, seen_at=now)
                 for name, user_id, session_id in opened], ignore_conflicts=True)
        if seen:
            SocketPresence.objects.filter(channel_name__in=seen).update(seen_at=now)
        if closed:
            SocketPresence.objects.filter(channel_name__in=closed).delete()
