"""Offline chat push: FCM to devices with no live socket, collapsed per room.

    worker job chat_pushes_plan: read new message events after a cursor (no cost on the
    send path) -> for each, members who have not read it -> their devices whose session has
    no live socket -> push Delivery rows (older pending pushes of that room and device are
    cancelled: one notification per room on the phone)
    room read on any device -> pending pushes up to that seq cancelled; a push already shown
    is cleared by a data-only push the app uses to remove it
    message deleted -> its text is removed from every push row (waiting ones are cancelled)
    and from the development outbox's copies

Why a cursor with holes: event ids are taken when the row is inserted, not when it commits,
so on PostgreSQL a message of one room can become visible after a higher id of another room
was already planned; a plain "id > cursor" would pass over it for good. Each pass records
the ids it jumps over (in-flight, rolled back) as holes on the cursor row and looks them up
again on the next passes, for CHAT_PUSH_HOLE_SECONDS; then a hole is given up (a rolled
back send leaves one forever). Holes are few (a sequence gap per concurrent send), so the
look-up is one small query. A late event is always its room's newest when it appears: a
room's next seq is taken under the room's row lock, which the late writer holds until it
commits, so planning it late never puts an older message over a newer one. New events are
read before holes, so that a newer message of the late one's room is never read before it.
"""

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from chatserver.chat.config import chat_setting
from chatserver.chat.models import Membership, RoomEvent, SocketPresence
from notify.delivery import quiet_hours_end
from notify.models import (
    ChatPushCursor,
    Delivery,
    Device,
    DevOutboxMessage,
    NotifySettings,
    Preference,
)

log = logging.getLogger(__name__)
CHAT_PUSH_VALIDITY = timedelta(hours=24)
CHAT_PUSH_HOLE_SECONDS = 300  # how long an id passed over is looked for again
CHAT_PUSH_HOLES_MAX = 1000  # a larger jump of ids (a sequence reset) is not followed


def _collapse_key(room_id: int) -> str:
    return f"room{room_id}"


def _cursor_locked() -> ChatPushCursor:
    """The cursor row, locked: one worker at a time plans chat pushes. A new cursor starts
    at the newest event, so that a deployment never pushes old history."""
    cursor = ChatPushCursor.objects.select_for_update().filter(pk=1).first()
    if cursor is None:
        head = RoomEvent.objects.aggregate(head=Max("pk"))["head"] or 0
        ChatPushCursor.objects.get_or_create(pk=1, defaults={"last_event_id": head})
        cursor = ChatPushCursor.objects.select_for_update().get(pk=1)
    return cursor


def chat_pushes_plan(*, batch_size: int = 200) -> bool:
    """One unit of the worker: plan pushes for the next message events and for those that
    committed late (see the module's docstring). Whether any event was read."""
    now = timezone.now()
    live_after = now - timedelta(seconds=chat_setting("SONOR_CHAT_PRESENCE_TTL"))
    with transaction.atomic():
        cursor = _cursor_locked()
        # The events are locked while planned: a deletion waits for the plan and then removes
        # the text from the rows written here; a plan that waits for a deletion skips it.
        locked = (RoomEvent.objects.select_related("room", "sender")
                  .select_for_update(of=("self",)).order_by("pk"))
        new = list(locked.filter(pk__gt=cursor.last_event_id)[:batch_size])
        holes = {int(pk): first for pk, first in cursor.holes.items()
                 if now.timestamp() - first < CHAT_PUSH_HOLE_SECONDS}
        late = list(locked.filter(pk__in=list(holes))) if holes else []
        for event in sorted(late + new, key=lambda e: e.pk):
            if event.kind == RoomEvent.Kind.MESSAGE and event.deleted_at is None \
                    and now - event.created_at < CHAT_PUSH_VALIDITY:
                _plan_event(event, now=now, live_after=live_after)
        for event in late:
            del holes[event.pk]
        if new:
            seen = {event.pk for event in new}
            start = max(cursor.last_event_id + 1, new[-1].pk - CHAT_PUSH_HOLES_MAX)
            holes.update({pk: now.timestamp() for pk in range(start, new[-1].pk)
                          if pk not in seen})
            cursor.last_event_id = new[-1].pk
        if new or holes != {int(pk): first for pk, first in cursor.holes.items()}:
            cursor.holes = {str(pk): first for pk, first in holes.items()}
            cursor.save(update_fields=["last_event_id", "holes"])
    return bool(new or late)


def _plan_event(event: RoomEvent, *, now: datetime, live_after: datetime) -> None:
    recipients = set(
        Membership.objects.filter(room_id=event.room_id, left_at__isnull=True,
                                  last_read_seq__lt=event.seq)
        .exclude(user_id=event.sender_id or 0).values_list("user_id", flat=True))
    recipients -= set(Preference.objects.filter(
        user_id__in=recipients, category="chat", channel="push", enabled=False,
    ).values_list("user_id", flat=True))
    if not recipients:
        return
    live_sessions = set(SocketPresence.objects.filter(
        user_id__in=recipients, seen_at__gte=live_after).values_list("session_id", flat=True))
    devices = [d for d in Device.objects.filter(user_id__in=recipients,
                                                session__revoked_at__isnull=True)
               if d.session_id not in live_sessions]
    if not devices:
        return
    settings_by_user = {s.user_id: s for s in NotifySettings.objects.filter(
        user_id__in={d.user_id for d in devices})}
    sender_name = event.sender.name if event.sender else ""
    title = event.room.name or sender_name or "Sonor"
    body = f"{sender_name}: {event.text}" if event.room.name else event.text
    # Collapse: a newer message of the room replaces what is still waiting for the phone.
    Delivery.objects.filter(
        channel="push", room_id=event.room_id, device__in=devices,
        status=Delivery.Status.PENDING,
    ).update(status=Delivery.Status.CANCELLED, finished_at=now)
    Delivery.objects.bulk_create([
        Delivery(
            channel="push", user_id=device.user_id, device=device, address=device.token,
            room_id=event.room_id, seq=event.seq, title=title[:200], body=body,
            data={"type": "chat.message", "room": str(event.room_id), "seq": str(event.seq)},
            dedupe_key=f"chat:{event.room_id}:{event.seq}:{device.pk}",
            next_attempt_at=max(filter(None, [now, quiet_hours_end(
                notify_settings=settings_by_user.get(device.user_id), now=now)])),
            expires_at=event.created_at + CHAT_PUSH_VALIDITY,
        )
        for device in devices
    ], ignore_conflicts=True)


def chat_pushes_on_read(*, user_id: int, room_id: int, after_seq: int, seq: int) -> None:
    """The room was read from `after_seq` up to `seq` on some device: nothing older needs to
    reach the phone, and a push it already shows is cleared. The caller holds the
    transaction."""
    now = timezone.now()
    Delivery.objects.filter(
        user_id=user_id, room_id=room_id, channel="push", seq__lte=seq,
        status=Delivery.Status.PENDING,
    ).update(status=Delivery.Status.CANCELLED, finished_at=now)
    shown = Delivery.objects.filter(
        user_id=user_id, room_id=room_id, channel="push", seq__gt=after_seq, seq__lte=seq,
        status=Delivery.Status.SENT, sent_at__gte=now - CHAT_PUSH_VALIDITY,
    ).values_list("device_id", flat=True).distinct()
    Delivery.objects.bulk_create([
        Delivery(
            channel="push", user_id=user_id, device=device, address=device.token,
            room_id=room_id, seq=seq, data={"type": "chat.clear", "room": str(room_id)},
            dedupe_key=f"chatclear:{room_id}:{seq}:{device.pk}", next_attempt_at=now,
            expires_at=now + CHAT_PUSH_VALIDITY,
        )
        for device in Device.objects.filter(pk__in=list(shown))
    ], ignore_conflicts=True)


def chat_pushes_on_delete(*, room_id: int, seq: int) -> None:
    """The message at `seq` was deleted: no copy of its text stays in the push ledger (staff
    can read it) or in the development outbox, what still waits is not sent, and a phone
    that shows it as the room's latest push is told to clear it. The caller holds the
    transaction."""
    now = timezone.now()
    rows = Delivery.objects.filter(channel="push", room_id=room_id, seq=seq,
                                   notification__isnull=True, dedupe_key__startswith="chat:")
    copies = set(rows.exclude(body="").values_list("address", "body"))
    shown = list(rows.filter(status=Delivery.Status.SENT, sent_at__gte=now - CHAT_PUSH_VALIDITY)
                 .values_list("device_id", flat=True))
    rows.filter(status__in=[Delivery.Status.PENDING, Delivery.Status.SENDING]).update(
        status=Delivery.Status.CANCELLED, finished_at=now, lease_until=None)
    rows.update(body="")
    for address, body in copies:
        DevOutboxMessage.objects.filter(sender_kind="push", address=address, body=body
                                        ).update(body="")
    newer = Delivery.objects.filter(channel="push", room_id=room_id, seq__gt=seq,
                                    dedupe_key__startswith="chat:",
                                    status=Delivery.Status.SENT).values_list("device_id",
                                                                            flat=True)
    Delivery.objects.bulk_create([
        Delivery(
            channel="push", user_id=device.user_id, device=device, address=device.token,
            room_id=room_id, seq=seq, data={"type": "chat.clear", "room": str(room_id)},
            dedupe_key=f"chatclear:{room_id}:{seq}:{device.pk}", next_attempt_at=now,
            expires_at=now + CHAT_PUSH_VALIDITY,
        )
        for device in Device.objects.filter(pk__in=shown).exclude(pk__in=list(newer))
    ], ignore_conflicts=True)
