"""Inbox reads, the agencies' reads of what they sent, and the citizen's data export."""

import base64
import binascii
from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from identity.models import AccessLogEntry, DeviceSession, PhoneNumber, User
from notify.errors import BroadcastNotFound, InvalidCursor, NotificationNotFound
from notify.models import Agency, Broadcast, Delivery, InboxState, Notification


def inbox_seq(*, user: User) -> int:
    state = InboxState.objects.filter(user=user).first()
    return state.last_seq if state else 0


def inbox_since(*, user: User, after_seq: int, limit: int) -> list[Notification] | None:
    """Notifications after `after_seq` in order, or None when more than `limit` were missed
    (the client must resync the inbox instead of getting a partial answer)."""
    rows = list(
        Notification.objects.filter(user=user, seq__gt=after_seq).order_by("seq")[: limit + 1]
    )
    return None if len(rows) > limit else rows


# ---- inbox pages ---------------------------------------------------------------------------

def inbox_cursor_encode(seq: int) -> str:
    return base64.urlsafe_b64encode(f"inbox:{seq}".encode()).decode().rstrip("=")


def inbox_cursor_decode(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, seq = text.partition(":")
        if kind != "inbox" or not seq.isdigit():
            raise ValueError(text)
        return int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursor() from exc


def inbox_page(
    *, user: User, cursor: str | None = None, limit: int = 50, category: str | None = None,
    unread: bool | None = None, agency_id: int | None = None, archived: bool = False,
) -> tuple[list[Notification], str | None]:
    """One page of the user's inbox, newest first, and the cursor of the next (older) page.
    Reported notifications are never listed to their reporter."""
    rows: QuerySet[Notification] = (
        Notification.objects.filter(user=user, reported_at__isnull=True,
                                    archived_at__isnull=not archived)
        .select_related("agency", "broadcast").prefetch_related("deliveries")
        .order_by("-seq")
    )
    if cursor:
        rows = rows.filter(seq__lt=inbox_cursor_decode(cursor))
    if category:
        rows = rows.filter(category=category)
    if unread is not None:
        rows = rows.filter(read_at__isnull=unread)
    if agency_id is not None:
        rows = rows.filter(agency_id=agency_id)
    page = list(rows[: limit + 1])
    if len(page) > limit:
        page = page[:limit]
        return page, inbox_cursor_encode(page[-1].seq)
    return page, None


# ---- agencies ------------------------------------------------------------------------------

def agency_notification_get(*, agency: Agency, notification_id: int) -> Notification:
    """A notification this agency sent (others' are NotificationNotFound)."""
    notification = (Notification.objects.select_related("user")
                    .filter(pk=notification_id, agency=agency).first())
    if notification is None:
        raise NotificationNotFound()
    return notification


def inbox_delivery_status(notification: Notification) -> dict[str, Any]:
    """The inbox channel of a notification's delivery status, as its agency sees it."""
    if notification.reported_at is not None:
        status = "reported"
    elif notification.archived_at is not None:
        status = "archived"
    elif notification.read_at is not None:
        status = "read"
    else:
        status = "stored"
    return {
        "channel": "inbox", "status": status, "stored_at": notification.created_at,
        "read_at": notification.read_at, "archived_at": notification.archived_at,
        "reported_at": notification.reported_at,
        "report_reason": notification.report_reason or None,
        # The inbox is written once, in the same transaction as the notification.
        "attempts": [{"at": notification.created_at, "status": "stored", "detail": ""}],
    }


def delivery_channels_status(notification: Notification) -> list[dict[str, Any]]:
    """Push, SMS and email deliveries of a notification with their attempts; addresses
    stay out (the agency sees how it went, not the citizen's number or tokens)."""
    rows = []
    for delivery in notification.deliveries.order_by("channel", "pk").prefetch_related(
            "attempt_log"):
        rows.append({
            "channel": delivery.channel, "status": delivery.status,
            "stored_at": delivery.created_at, "sent_at": delivery.sent_at,
            "next_attempt_at": delivery.next_attempt_at
            if delivery.status == Delivery.Status.PENDING else None,
            "expires_at": delivery.expires_at, "parts": delivery.parts or None,
            "attempts": [{"at": a.finished_at, "status": a.status, "detail": a.detail}
                         for a in delivery.attempt_log.order_by("pk")],
        })
    return rows


def broadcast_get(*, agency: Agency, broadcast_id: int) -> Broadcast:
    broadcast = Broadcast.objects.filter(pk=broadcast_id, agency=agency).first()
    if broadcast is None:
        raise BroadcastNotFound()
    return broadcast


# ---- the citizen's data export (terms 4.2, 5.1) --------------------------------------------

ExportSection = Callable[[User], Any]
# Extension point: other packages add their part of a citizen's data export here, as
# name -> function(user) -> JSON-serialisable data, from their AppConfig.ready(). Chat rooms
# and the messages the user sent belong here once chatserver has models (it has none yet);
# notification preferences once notify has them.
EXPORT_SECTIONS: dict[str, ExportSection] = {}


def export_section_register(name: str, section: ExportSection) -> None:
    EXPORT_SECTIONS[name] = section


def user_data_export(*, user: User) -> dict[str, Any]:
    """Everything Sonor keeps about the user, for the user (no token or code hashes)."""
    data: dict[str, Any] = {
        "exported_at": timezone.now(),
        "profile": {
            "id": user.pk, "register_number": user.register_number, "name": user.name,
            "status": user.status, "created_at": user.created_at,
            "status_changed_at": user.status_changed_at,
        },
        "phones": [
            {"phone": p.e164, "verified_at": p.verified_at, "released_at": p.released_at,
             "release_reason": p.release_reason}
            for p in PhoneNumber.objects.filter(user=user).order_by("verified_at")
        ],
        "sessions": [
            {"id": s.id, "device_name": s.device_name, "platform": s.platform,
             "login_method": s.login_method, "ip": s.ip, "created_at": s.created_at,
             "last_seen_at": s.last_seen_at, "revoked_at": s.revoked_at,
             "revoke_reason": s.revoke_reason}
            for s in DeviceSession.objects.filter(user=user).order_by("created_at")
        ],
        "inbox": [
            {"id": n.pk, "seq": n.seq, "category": n.category, "title": n.title,
             "body": n.body, "link": n.link, "agency": n.agency.name if n.agency else None,
             "reference": n.reference, "amount_mnt": n.amount_mnt, "due_date": n.due_date,
             "created_at": n.created_at, "read_at": n.read_at, "archived_at": n.archived_at,
             "reported_at": n.reported_at, "report_reason": n.report_reason}
            for n in Notification.objects.filter(user=user).select_related("agency")
            .order_by("seq")
        ],
        "access_log": [
            {"actor_kind": e.actor_kind, "actor_name": e.actor_name, "action": e.action,
             "created_at": e.created_at}
            for e in AccessLogEntry.objects.filter(subject=user).order_by("created_at")
        ],
    }
    for name, section in EXPORT_SECTIONS.items():
        data[name] = section(user)
    return data
