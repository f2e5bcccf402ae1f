"""The inbox: notifications written into it, and what the citizen does with them.

Every notification is committed before it is published: frames go out on commit
(chatserver.core.realtime.publish_on_commit), so a rolled-back write is never seen live.

    notification_create (one)  --> InboxState lock, next seq --> INSERT
    notifications_insert (many: agency batches, broadcasts) --> all heads advanced at once
                               --> bulk INSERT
        on commit: notify.new + notify.unread to every device of each citizen
"""

import logging
from collections import Counter
from datetime import date

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone
from pydantic import BaseModel

from chatserver.core import protocol
from chatserver.core.errors import InvalidInput
from chatserver.core.realtime import publish_many_on_commit, publish_on_commit, user_group
from chatserver.core.sql import bulk_insert, fetch_rows, in_list
from identity.models import User
from identity.services import access_log_record
from notify.delivery import deliveries_cancel_on_read, deliveries_plan, deliveries_plan_many
from notify.errors import NotificationNotFound
from notify.models import Agency, InboxState, Notification

log = logging.getLogger(__name__)

REPORT_REASON_MAX = 500


_INBOX_SEQ_NEXT = (f"UPDATE {InboxState._meta.db_table} SET last_seq = last_seq + 1"
                   " WHERE user_id = %s RETURNING last_seq")

def _inbox_seq_next(*, user: User) -> int:
    """Allocate the user's next inbox seq in one statement; the row lock it takes serialises
    concurrent writers until the caller's transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute(_INBOX_SEQ_NEXT, [user.pk])
        row = cursor.fetchone()
        if row is None:  # the user's first notification
            InboxState.objects.get_or_create(user=user)
            cursor.execute(_INBOX_SEQ_NEXT, [user.pk])
            row = cursor.fetchone()
    return int(row[0])

def unread_count(*, user: User) -> int:
    """Unread notifications still in the inbox (archived and reported ones do not count)."""
    return _unread_counts(user_ids=[user.pk]).get(user.pk, 0)

def notification_frame(notification: Notification) -> protocol.NotifyNew:
    return protocol.NotifyNew(
        id=notification.pk, seq=notification.seq, category=notification.category,
        title=notification.title, body=notification.body, link=notification.link,
        created_at=notification.created_at,
    )

def _unread_publish_on_commit(*, user: User) -> None:
    publish_on_commit(user_group(user.pk), protocol.NotifyUnread(count=unread_count(user=user)))

@transaction.atomic
def notification_create(
    *, user: User, category: str, title: str, body: str, link: str = "",
    agency: Agency | None = None, reference: str = "", amount_mnt: int | None = None,
    due_date: date | None = None, idempotency_key: str = "", request_digest: str = "",
) -> Notification:
    """Store a notification in the user's inbox and push it live to every device on commit."""
    seq = _inbox_seq_next(user=user)
    notification = Notification.objects.create(
        user=user, seq=seq, category=category, title=title, body=body, link=link,
        agency=agency, reference=reference, amount_mnt=amount_mnt, due_date=due_date,
        idempotency_key=idempotency_key, request_digest=request_digest,
    )
    deliveries = deliveries_plan(notification=notification)
    # Both frames through one loop entry after commit.
    publish_many_on_commit([
        (user_group(user.pk), notification_frame(notification)),
        (user_group(user.pk), protocol.NotifyUnread(count=unread_count(user=user)))])
    log.info("notification %s seq %s (%s) for user %s, %s deliveries", notification.pk, seq,
             category, user.pk, len(deliveries))
    return notification


_INBOX = InboxState._meta.db_table

def _inbox_heads_advance(per_user: Counter[int], user_ids: list[int]) -> dict[int, int]:
    """Advance each inbox's last seq by its count in one statement (creating the rows of
    first notifications); returns each inbox's last seq before. The rows are locked in user
    id order, so concurrent batches cannot deadlock."""
    values = ", ".join(["(%s, %s)"] * len(user_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_INBOX} (user_id, last_seq) VALUES {values}"
            f" ON CONFLICT (user_id) DO UPDATE SET last_seq = {_INBOX}.last_seq"
            " + excluded.last_seq RETURNING user_id, last_seq",
            [x for uid in user_ids for x in (uid, per_user[uid])])
        return {uid: last - per_user[uid] for uid, last in cursor.fetchall()}

def notifications_insert(rows: list[Notification]) -> None:
    """Store new notifications (seq unset) in the caller's transaction: each inbox's seqs
    stay gap-free (_inbox_heads_advance); the deliveries are planned, and each citizen's
    devices get notify.new and notify.unread on commit."""
    per_user = Counter(n.user_id for n in rows)
    user_ids = sorted(per_user)
    heads = _inbox_heads_advance(per_user, user_ids)
    for n in rows:
        heads[n.user_id] += 1
        n.seq = heads[n.user_id]
    bulk_insert(rows)
    deliveries = deliveries_plan_many(notifications=rows)
    counts = _unread_counts(user_ids=user_ids)
    frames: list[tuple[str, BaseModel]] = []
    for n in rows:
        frames.append((user_group(n.user_id), notification_frame(n)))
    for uid in user_ids:
        frames.append((user_group(uid), protocol.NotifyUnread(count=counts.get(uid, 0))))
    # A batch from the agency API does not wait for the loop to publish (202 needs the commit).
    publish_many_on_commit(frames, wait=False)
    log.info("%s notifications stored (%s) for %s citizens, %s deliveries", len(rows),
             ", ".join(f"{n.pk}:{n.category}" for n in rows[:20]) + (", …" if len(rows) > 20
                                                                    else ""),
             len(user_ids), len(deliveries))

def _unread_counts(*, user_ids: list[int]) -> dict[int, int]:
    """unread_count for many inboxes, in one statement."""
    return dict(fetch_rows(
        f"SELECT user_id, COUNT(*) FROM {Notification._meta.db_table}"
        f" WHERE user_id IN ({in_list(user_ids)}) AND read_at IS NULL"
        " AND archived_at IS NULL AND reported_at IS NULL GROUP BY user_id", user_ids))


# ---- the citizen's inbox -------------------------------------------------------------------

def _mark_read(*, user: User, unread: QuerySet[Notification]) -> int:
    """Mark these unread notifications read: their pending push and SMS are cancelled and
    every device gets the new unread count."""
    ids = list(unread.values_list("pk", flat=True))
    updated = Notification.objects.filter(pk__in=ids).update(read_at=timezone.now())
    if updated:
        deliveries_cancel_on_read(notification_ids=ids)
        _unread_publish_on_commit(user=user)
    return updated

@transaction.atomic
def notifications_mark_read(*, user: User, ids: list[int]) -> int:
    """Mark the user's own notifications read."""
    return _mark_read(user=user, unread=Notification.objects.filter(
        user=user, pk__in=ids, read_at__isnull=True))

@transaction.atomic
def notifications_mark_all_read(*, user: User) -> int:
    """Mark everything in the user's inbox read."""
    return _mark_read(user=user, unread=Notification.objects.filter(
        user=user, read_at__isnull=True))

def _own_notification_locked(*, user: User, notification_id: int) -> Notification:
    notification = (Notification.objects.select_for_update()
                    .filter(user=user, pk=notification_id, reported_at__isnull=True).first())
    if notification is None:
        raise NotificationNotFound()
    return notification

@transaction.atomic
def notification_archive(*, user: User, notification_id: int) -> Notification:
    """Move a notification out of the inbox (kept, listed with ?archived=true)."""
    notification = _own_notification_locked(user=user, notification_id=notification_id)
    if notification.archived_at is None:
        notification.archived_at = timezone.now()
        notification.save(update_fields=["archived_at"])
        _unread_publish_on_commit(user=user)
    return notification

@transaction.atomic
def notification_report(*, user: User, notification_id: int, reason: str) -> Notification:
    """The citizen says this notification was meant for someone else (terms 7.3): it leaves
    their inbox and unread count, and the sending agency and staff see the report."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("Say why the notification is not yours.", field="reason")
    notification = _own_notification_locked(user=user, notification_id=notification_id)
    notification.reported_at = timezone.now()
    notification.report_reason = reason[:REPORT_REASON_MAX]
    notification.save(update_fields=["reported_at", "report_reason"])
    _unread_publish_on_commit(user=user)
    log.warning("notification %s (agency %s) reported as misaddressed by user %s",
                notification.pk, notification.agency_id, user.pk)
    return notification

def staff_notification_read(*, staff_name: str, notification: Notification) -> None:
    """Staff opened a citizen's notification (admin): the citizen's access log says so."""
    access_log_record(subject=notification.user, actor_kind="staff", actor_name=staff_name,
                      action=f"read notification {notification.pk}")
