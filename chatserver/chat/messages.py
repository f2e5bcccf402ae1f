"""Chat messages: send (one or a batch), edit, delete.

Every write to a room's stream allocates its seq with ONE statement that also checks the
actor's membership (and, for messages, the verified phone and a block), then inserts, in one
transaction; the room row's lock serialises the room's writers. Frames go out on commit.

    chat.send --> message_send --> resend? (room, sender, client_msg_id) row --> same event back
                       |  text_clean, pii_kinds, per-user throttle
                       +--> BEGIN; UPDATE room SET last_seq = last_seq + 1 WHERE member ...
                            RETURNING last_seq; INSERT event; COMMIT
                            --> room.push chat.message to group room.<id> (one Redis message
                                per process, written as is to each local socket)

Sockets send through messages_send_batch (chatserver/sockets/message_writer.py collects
them): the same steps for many sends in ONE transaction, one INSERT, one room.push per room.

A new member's sockets get `room.join` (with the events that added them) through the user's
own group and start following the room; a leaving member's stop after the frames saying so.
"""

import logging
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from pydantic import BaseModel

from chatserver.chat.config import chat_setting
from chatserver.chat.errors import MessageDeleted, MessageNotFound, NotYourMessage, PiiWarning
from chatserver.chat.frames import event_frame, message_frame
from chatserver.chat.membership import active_membership, is_active_member
from chatserver.chat.models import Membership, Room, RoomEvent
from chatserver.chat.push import chat_pushes_on_delete
from chatserver.chat.streams import (
    BLOCK_TABLE,
    MEMBERSHIP_TABLE,
    PHONE_TABLE,
    ROOM_TABLE,
    allocation_failed,
    seq_allocate,
    seq_allocate_or_raise,
)
from chatserver.chat.text import pii_kinds, text_clean
from chatserver.core.errors import AppError
from chatserver.core.realtime import publish_room_on_commit, publish_rooms_on_commit
from chatserver.core.sql import bulk_insert, fetch_rows_by_keys
from chatserver.core.throttle import throttle_check, throttle_check_many
from identity.models import User

log = logging.getLogger(__name__)
Role = Membership.Role


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
    seq = seq_allocate(room_id=room_id, actor_id=sender.pk, require_phone=True,
                       respect_blocks=True)
    if seq is None:
        allocation_failed(room_id=room_id, actor=sender, require_phone=True)
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
                        allocation_failed(room_id=request.room_id, actor=request.sender,
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
            bulk_insert([event for _, event in events])
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
                f"SELECT id FROM {ROOM_TABLE} WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
                [room_ids])


def _senders_allowed(pairs: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """The (room, sender) pairs that may send, by seq_allocate's rule for messages (active
    member, verified phone, in a direct room no block either way), read at once by
    fetch_rows_by_keys. Caller holds the rooms' locks."""
    if not pairs:
        return set()
    sql = (
        f"SELECT m.room_id, m.user_id FROM {MEMBERSHIP_TABLE} m"
        f" JOIN {ROOM_TABLE} r ON r.id = m.room_id"
        " WHERE ({keys}) AND m.left_at IS NULL"
        f" AND EXISTS (SELECT 1 FROM {PHONE_TABLE} p WHERE p.user_id = m.user_id"
        " AND p.released_at IS NULL)"
        f" AND (r.kind = 'group' OR NOT EXISTS (SELECT 1 FROM {BLOCK_TABLE} b"
        f" JOIN {MEMBERSHIP_TABLE} o ON o.room_id = m.room_id"
        " AND ((b.blocker_id = o.user_id AND b.blocked_id = m.user_id)"
        " OR (b.blocked_id = o.user_id AND b.blocker_id = m.user_id))))")
    rows = fetch_rows_by_keys(sql, [("m.room_id", "bigint"), ("m.user_id", "bigint")],
                              sorted(pairs))
    return {(int(room_id), int(user_id)) for room_id, user_id in rows}


def _room_heads_bump(counts: dict[int, int]) -> dict[int, int]:
    """Advance each room's last_seq by its count in one statement; the new heads by room.
    Caller holds the rooms' locks."""
    if not counts:
        return {}
    listed = ", ".join(["(%s, %s)"] * len(counts))
    sql = (f"WITH v (id, k) AS (VALUES {listed})"
           f" UPDATE {ROOM_TABLE} SET last_seq = last_seq"
           f" + (SELECT v.k FROM v WHERE v.id = {ROOM_TABLE}.id)"
           f" WHERE id IN (SELECT v.id FROM v) RETURNING id, last_seq")
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for item in sorted(counts.items()) for value in item])
        return {int(room_id): int(head) for room_id, head in cursor.fetchall()}


def _messages_by_client_ids(requests: list[SendRequest]
                            ) -> dict[tuple[int, int | None, str], RoomEvent]:
    """The stored messages that these requests resend. One probe of the unique index per
    key (an IN per column would make the database try every combination); the events
    themselves are read only when there are any, which is rare (a resend after a lost ack)."""
    keys = {request.key for request in requests}
    if not keys:
        return {}
    found = fetch_rows_by_keys(
        f"SELECT id FROM {RoomEvent._meta.db_table} WHERE {{keys}}",
        [("room_id", "bigint"), ("sender_id", "bigint"), ("client_msg_id", "varchar")],
        list(keys))
    if not found:
        return {}
    return {key: row for row in RoomEvent.objects.filter(pk__in=[id_ for id_, in found])
            if (key := (row.room_id, row.sender_id, row.client_msg_id or "")) in keys}


def _publish_messages_on_commit(events: list[RoomEvent]) -> None:
    by_room: dict[int, list[BaseModel]] = {}
    for event in events:  # in seq order within each room
        by_room.setdefault(event.room_id, []).append(message_frame(event))
    # The socket writer's batch hands them to its loop and goes on (see layer_send_many).
    publish_rooms_on_commit(list(by_room.items()), wait=False)


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
        seq = seq_allocate(room_id=room_id, actor_id=user.pk, require_phone=True,
                           respect_blocks=True)
        if seq is None:
            allocation_failed(room_id=room_id, actor=user, require_phone=True)
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
        if previous is not None and is_active_member(room_id=room_id, user_id=user.pk):
            return previous
    with transaction.atomic():
        seq = seq_allocate_or_raise(room_id=room_id, actor=user)
        target = _message_in_room(room_id=room_id, message_id=message_id)
        if target.deleted_at is not None:
            raise MessageDeleted()
        if target.sender_id != user.pk:
            room = Room.objects.get(pk=room_id)
            role = active_membership(room_id=room_id, user_id=user.pk).role
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
