"""Inbox writes, agency notifications and direct sends.

Every notification is committed before it is published: frames go out on commit
(chatserver.core.realtime.publish_on_commit), so a rolled-back write is never seen live.

    agency POST --> agency_notification_send --> notification_create --> InboxState lock, seq
                                                        |                 INSERT, on commit:
                                                        +--> notify.new + notify.unread to
                                                             every device of the citizen
"""

import hashlib
import json
import logging
from datetime import date
from typing import Any

from asgiref.sync import async_to_sync
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, QuerySet
from django.utils import timezone
from pydantic import BaseModel

from chatserver.core import protocol
from chatserver.core.errors import InvalidInput, InvalidRegisterNumber
from chatserver.core.realtime import publish_many_on_commit, publish_on_commit, user_group
from identity.domain import register_parse
from identity.models import User
from identity.services import access_log_record
from notify.delivery import deliveries_cancel_on_read, deliveries_plan, deliveries_plan_many
from notify.errors import CitizenNotFound, IdempotencyKeyReused, NotificationNotFound
from notify.models import Agency, Broadcast, InboxState, Notification
from notify.senders.base import OutboundMessage, SendResult
from notify.senders.registry import sender_for

log = logging.getLogger(__name__)

TITLE_MAX = 200
BODY_MAX = 4000
LINK_MAX = 1000
REFERENCE_MAX = 100
AMOUNT_MAX = 10**12
REPORT_REASON_MAX = 500
# What agencies may send; `chat` is the server's own.
AGENCY_CATEGORIES = frozenset({"service_request", "petition", "complaint", "payment", "system",
                               "security"})


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
    return Notification.objects.filter(user=user, read_at__isnull=True, archived_at__isnull=True,
                                       reported_at__isnull=True).count()


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


def sms_send_now(*, to: str, text: str) -> SendResult:
    """Send one SMS at once (verification codes), outside the inbox and its preferences."""
    result: SendResult = async_to_sync(sender_for("sms").send)(
        OutboundMessage(kind="sms", address=to, body=text)
    )
    log.info("sms to %s: %s %s", to[:-4] + "****", result.status, result.detail)
    return result


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


# ---- agencies ------------------------------------------------------------------------------

def notification_fields_validate(
    *, category: str, title: str, body: str, link: str, reference: str = "",
    amount_mnt: int | None = None, due_date: date | None = None,
) -> None:
    """The rules of an agency notification; the API's schemas check the same, this guards
    every other caller."""
    if category not in AGENCY_CATEGORIES:
        raise InvalidInput("Unknown category.", field="category",
                           allowed=sorted(AGENCY_CATEGORIES))
    if not title.strip() or len(title) > TITLE_MAX:
        raise InvalidInput(f"The title is 1 to {TITLE_MAX} characters.", field="title")
    if not body.strip() or len(body) > BODY_MAX:
        raise InvalidInput(f"The body is 1 to {BODY_MAX} characters.", field="body")
    if link and (not link.startswith("https://") or len(link) > LINK_MAX):
        raise InvalidInput("The link must be an https:// address.", field="link")
    if len(reference) > REFERENCE_MAX:
        raise InvalidInput(f"The reference is at most {REFERENCE_MAX} characters.",
                           field="reference")
    if category == "payment":
        if amount_mnt is None or due_date is None:
            raise InvalidInput("A payment notice needs amount_mnt and due_date.",
                               field="amount_mnt")
    if amount_mnt is not None and not 0 < amount_mnt <= AMOUNT_MAX:
        raise InvalidInput("amount_mnt is a positive whole number of tögrög.",
                           field="amount_mnt")


def request_digest(payload: dict[str, Any]) -> str:
    """A digest of a request's meaning, to tell a retry from a different request."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def citizen_by_register(*, register_number: str) -> User:
    """The citizen to notify; an organisation's register or an unknown or closed account is
    CitizenNotFound, a malformed one InvalidRegisterNumber."""
    try:
        register = register_parse(register_number)
    except InvalidRegisterNumber as exc:
        if register_number.strip().isdigit():  # an organisation has no inbox
            raise CitizenNotFound("A register of an organisation, not of a citizen.") from exc
        raise
    user = (User.objects.filter(register_number=register.value)
            .exclude(status=User.Status.CLOSED).first())
    if user is None:
        raise CitizenNotFound()
    return user


def _notification_replay(*, agency: Agency, idempotency_key: str, digest: str
                         ) -> Notification | None:
    existing = Notification.objects.filter(agency=agency, idempotency_key=idempotency_key).first()
    if existing is not None and existing.request_digest != digest:
        raise IdempotencyKeyReused(notification_id=existing.pk)
    return existing


def agency_notification_send(
    *, agency: Agency, register_number: str, category: str, title: str, body: str,
    link: str = "", reference: str = "", amount_mnt: int | None = None,
    due_date: date | None = None, idempotency_key: str = "",
) -> tuple[Notification, bool]:
    """An agency's notification to one citizen: (notification, replayed).

    With an idempotency key, a retry of the same request returns the first notification
    (replayed=True), also when the duplicates race: the unique (agency, key) index lets one
    INSERT win, the others roll back whole and read the winner. Nothing is stored on error.
    """
    title, body = title.strip(), body.strip()
    notification_fields_validate(category=category, title=title, body=body, link=link,
                                 reference=reference, amount_mnt=amount_mnt, due_date=due_date)
    user = citizen_by_register(register_number=register_number)
    digest = request_digest({
        "register_number": user.register_number, "category": category, "title": title,
        "body": body, "link": link, "reference": reference, "amount_mnt": amount_mnt,
        "due_date": due_date,
    })
    if idempotency_key:
        existing = _notification_replay(agency=agency, idempotency_key=idempotency_key,
                                        digest=digest)
        if existing is not None:
            return existing, True
    try:
        # Its own transaction: on a lost race the whole write (seq included) rolls back.
        notification = notification_create(
            user=user, category=category, title=title, body=body, link=link, agency=agency,
            reference=reference, amount_mnt=amount_mnt, due_date=due_date,
            idempotency_key=idempotency_key, request_digest=digest,
        )
    except IntegrityError:
        if not idempotency_key:
            raise
        existing = _notification_replay(agency=agency, idempotency_key=idempotency_key,
                                        digest=digest)
        if existing is None:
            raise
        return existing, True
    return notification, False


def delivery_status_read(*, agency: Agency, notification_id: int) -> Notification:
    """The sending agency reads how its notification fared; the citizen's access log
    records the read. Other agencies get NotificationNotFound."""
    from notify.selectors import agency_notification_get

    notification = agency_notification_get(agency=agency, notification_id=notification_id)
    access_log_record(subject=notification.user, actor_kind="agency", actor_name=agency.name,
                      action=f"read delivery status of notification {notification.pk}")
    return notification


def staff_notification_read(*, staff_name: str, notification: Notification) -> None:
    """Staff opened a citizen's notification (admin): the citizen's access log says so."""
    access_log_record(subject=notification.user, actor_kind="staff", actor_name=staff_name,
                      action=f"read notification {notification.pk}")


def broadcast_notifications_bulk_create(
    *, broadcast: Broadcast, user_ids: list[int]
) -> list[Notification]:
    """One notification of `broadcast` into each of these inboxes, in the caller's
    transaction: seqs stay gap-free per user (the InboxState rows are locked in user id
    order, so concurrent batches cannot deadlock) and each user's devices get notify.new and
    notify.unread on commit."""
    if not user_ids:
        return []
    user_ids = sorted(set(user_ids))
    InboxState.objects.bulk_create([InboxState(user_id=uid) for uid in user_ids],
                                   ignore_conflicts=True)
    heads = dict(InboxState.objects.select_for_update().filter(user_id__in=user_ids)
                 .order_by("user_id").values_list("user_id", "last_seq"))
    InboxState.objects.filter(user_id__in=user_ids).update(last_seq=F("last_seq") + 1)
    rows = Notification.objects.bulk_create([
        Notification(user_id=uid, seq=heads[uid] + 1, agency_id=broadcast.agency_id,
                     broadcast=broadcast, category=broadcast.category, title=broadcast.title,
                     body=broadcast.body, link=broadcast.link, reference=broadcast.reference)
        for uid in user_ids
    ])
    deliveries_plan_many(notifications=rows)
    counts = _unread_counts(user_ids=user_ids)
    frames: list[tuple[str, BaseModel]] = []
    for row in rows:
        frames.append((user_group(row.user_id), notification_frame(row)))
        frames.append((user_group(row.user_id),
                       protocol.NotifyUnread(count=counts.get(row.user_id, 0))))
    publish_many_on_commit(frames)
    return rows


def _unread_counts(*, user_ids: list[int]) -> dict[int, int]:
    return dict(
        Notification.objects.filter(user_id__in=user_ids, read_at__isnull=True,
                                    archived_at__isnull=True, reported_at__isnull=True)
        .values("user_id").annotate(n=Count("id")).values_list("user_id", "n"))
