"""Broadcasts: one message into many inboxes, fanned out by workers in short batches.

    agency POST --> broadcast_create (validated, stored `scheduled`)           request ends
    worker: broadcast_batch_process, every call one short transaction:
        claim a due broadcast (FOR UPDATE SKIP LOCKED on PostgreSQL) --> next batch of users
        after `cursor` --> bulk notifications with their seqs --> cursor, done, status --> commit
    agency POST cancel --> status `cancelled`: a running one stops before its next batch.

A broadcast never holds a lock for longer than one batch, so chat and single notifications
interleave with it; batches of one broadcast are taken by one worker at a time.
"""

import logging
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Max
from django.utils import timezone

from chatserver.core.errors import InvalidInput, InvalidRegisterNumber
from identity.domain import register_parse
from identity.models import User
from notify.agency_sends import notification_fields_validate, request_digest
from notify.errors import BroadcastNotCancellable, IdempotencyKeyReused, MaintenanceNoticeTooShort
from notify.inbox import notifications_insert
from notify.models import HAS_IDEMPOTENCY_KEY, Agency, Broadcast, Notification
from notify.selectors import broadcast_get
from notify.workdays import earliest_after_working_days

log = logging.getLogger(__name__)


def _register_numbers_parse(raw: list[str]) -> list[str]:
    """Normalised, de-duplicated, in the given order; every malformed one is reported."""
    seen: dict[str, None] = {}
    bad: list[str] = []
    for item in raw:
        try:
            seen.setdefault(register_parse(item).value, None)
        except InvalidRegisterNumber:
            bad.append(item)
    if bad:
        raise InvalidRegisterNumber("Some register numbers are not citizens' register numbers.",
                                    invalid=bad[:100], invalid_count=len(bad))
    return list(seen)


def maintenance_notice_check(*, notice_at: datetime, maintenance_at: datetime) -> None:
    """Planned maintenance is announced at least N working days ahead (terms 13.2)."""
    days = settings.SONOR_MAINTENANCE_NOTICE_WORKING_DAYS
    earliest = earliest_after_working_days(notice_at, days)
    if maintenance_at < earliest:
        raise MaintenanceNoticeTooShort(
            f"Planned maintenance must be announced at least {days} working days ahead.",
            earliest_maintenance_at=earliest.isoformat(), working_days=days)


def _broadcast_replay(*, agency: Agency, idempotency_key: str, digest: str) -> Broadcast | None:
    existing = Broadcast.objects.filter(HAS_IDEMPOTENCY_KEY, agency=agency,
                                        idempotency_key=idempotency_key).first()
    if existing is not None and existing.request_digest != digest:
        raise IdempotencyKeyReused(broadcast_id=existing.pk)
    return existing


def broadcast_create(
    *, agency: Agency, category: str, title: str, body: str, link: str = "",
    reference: str = "", register_numbers: list[str] | None = None,
    starts_at: datetime | None = None, maintenance_at: datetime | None = None,
    idempotency_key: str = "",
) -> tuple[Broadcast, bool]:
    """Schedule a broadcast to all citizens (`register_numbers` None) or to a list:
    (broadcast, replayed). A system notice must carry `maintenance_at`, at least two working
    days after it starts. Workers do the fan-out; nothing is sent here."""
    title, body = title.strip(), body.strip()
    if category == "payment":
        raise InvalidInput("Payment notices go to one citizen each, not by broadcast.",
                           field="category")
    notification_fields_validate(category=category, title=title, body=body, link=link,
                                 reference=reference)
    now = timezone.now()
    starts = max(starts_at or now, now)
    if category == "system":
        if maintenance_at is None:
            raise InvalidInput("A maintenance notice needs maintenance_at.",
                               field="maintenance_at")
        maintenance_notice_check(notice_at=starts, maintenance_at=maintenance_at)
    elif maintenance_at is not None:
        raise InvalidInput("maintenance_at belongs to maintenance notices (category system).",
                           field="maintenance_at")
    numbers: list[str] = []
    if register_numbers is not None:
        if not register_numbers:
            raise InvalidInput("The list of register numbers is empty.",
                               field="register_numbers")
        if len(register_numbers) > settings.SONOR_BROADCAST_MAX_RECIPIENTS:
            raise InvalidInput(
                f"At most {settings.SONOR_BROADCAST_MAX_RECIPIENTS} register numbers.",
                field="register_numbers")
        numbers = _register_numbers_parse(register_numbers)
    digest = request_digest({
        "category": category, "title": title, "body": body, "link": link,
        "reference": reference, "register_numbers": register_numbers and numbers,
        "starts_at": starts_at, "maintenance_at": maintenance_at,
    })
    if idempotency_key:
        existing = _broadcast_replay(agency=agency, idempotency_key=idempotency_key,
                                     digest=digest)
        if existing is not None:
            return existing, True
    fields: dict[str, Any] = dict(
        agency=agency, category=category, title=title, body=body, link=link,
        reference=reference, starts_at=starts, maintenance_at=maintenance_at,
        audience=Broadcast.Audience.LIST if register_numbers is not None
        else Broadcast.Audience.ALL,
        register_numbers=numbers, total=len(numbers),
        idempotency_key=idempotency_key, request_digest=digest,
    )
    try:
        with transaction.atomic():
            broadcast = Broadcast.objects.create(**fields)
    except IntegrityError:
        existing = (_broadcast_replay(agency=agency, idempotency_key=idempotency_key,
                                      digest=digest) if idempotency_key else None)
        if existing is None:
            raise
        return existing, True
    log.info("broadcast %s (%s, %s) scheduled by agency %s for %s", broadcast.pk, category,
             broadcast.audience, agency.pk, starts.isoformat())
    return broadcast, False


@transaction.atomic
def broadcast_cancel(*, agency: Agency, broadcast_id: int) -> Broadcast:
    """Cancel a scheduled broadcast, or stop a running one before its next batch.
    Cancelling a cancelled one again is harmless; a finished one is BroadcastNotCancellable."""
    broadcast_get(agency=agency, broadcast_id=broadcast_id)  # permission check
    # Waits for a batch in progress to commit, then the worker sees the new status.
    broadcast = Broadcast.objects.select_for_update().get(pk=broadcast_id)
    if broadcast.status == Broadcast.Status.DONE:
        raise BroadcastNotCancellable(done=broadcast.done, total=broadcast.total)
    if broadcast.status != Broadcast.Status.CANCELLED:
        broadcast.status = Broadcast.Status.CANCELLED
        broadcast.cancelled_at = timezone.now()
        broadcast.save(update_fields=["status", "cancelled_at"])
        log.info("broadcast %s cancelled by agency %s at %s/%s", broadcast.pk, agency.pk,
                 broadcast.done, broadcast.total)
    return broadcast


def _broadcast_claim(*, now: datetime) -> Broadcast | None:
    """The next due broadcast, locked for this transaction. On PostgreSQL other workers skip
    it and take another; SQLite's IMMEDIATE transactions already run one writer at a time."""
    due = (Broadcast.objects
           .filter(status__in=[Broadcast.Status.SCHEDULED, Broadcast.Status.RUNNING],
                   starts_at__lte=now)
           .order_by("starts_at", "pk"))
    if connection.features.has_select_for_update_skip_locked:
        due = due.select_for_update(skip_locked=True)
    return due.first()


def _audience_all_start(broadcast: Broadcast) -> None:
    citizens = User.objects.exclude(status=User.Status.CLOSED)
    broadcast.last_user_id = citizens.aggregate(m=Max("pk"))["m"] or 0
    broadcast.total = citizens.filter(pk__lte=broadcast.last_user_id).count()


def _next_batch(broadcast: Broadcast, batch_size: int) -> tuple[list[int], int, bool]:
    """(user ids, how many audience entries this batch covers, whether it is the last)."""
    if broadcast.audience == Broadcast.Audience.ALL:
        ids = list(User.objects.exclude(status=User.Status.CLOSED)
                   .filter(pk__gt=broadcast.cursor, pk__lte=broadcast.last_user_id)
                   .order_by("pk").values_list("pk", flat=True)[:batch_size])
        if ids:
            broadcast.cursor = ids[-1]
        return ids, len(ids), len(ids) < batch_size
    chunk = broadcast.register_numbers[broadcast.cursor:broadcast.cursor + batch_size]
    ids = list(User.objects.exclude(status=User.Status.CLOSED)
               .filter(register_number__in=chunk).values_list("pk", flat=True))
    broadcast.cursor += len(chunk)
    broadcast.skipped += len(chunk) - len(ids)
    return ids, len(chunk), broadcast.cursor >= len(broadcast.register_numbers)


def broadcast_batch_process(*, batch_size: int | None = None) -> bool:
    """Fan one batch of one due broadcast out, in one short transaction.
    Returns whether there was work (the worker sleeps when there was none)."""
    batch_size = batch_size or settings.SONOR_BROADCAST_BATCH
    with transaction.atomic():
        now = timezone.now()
        broadcast = _broadcast_claim(now=now)
        if broadcast is None:
            return False
        if broadcast.status == Broadcast.Status.SCHEDULED:
            broadcast.status = Broadcast.Status.RUNNING
            broadcast.started_at = now
            if broadcast.audience == Broadcast.Audience.ALL:
                _audience_all_start(broadcast)
        user_ids, covered, last = _next_batch(broadcast, batch_size)
        rows = broadcast_notifications_bulk_create(broadcast=broadcast, user_ids=user_ids)
        broadcast.done += covered
        broadcast.delivered += len(rows)
        if last:
            broadcast.status = Broadcast.Status.DONE
            broadcast.finished_at = timezone.now()
            broadcast.done = max(broadcast.done, broadcast.total)
        broadcast.save()
    log.info("broadcast %s: %s/%s (%s)", broadcast.pk, broadcast.done, broadcast.total,
             broadcast.status)
    return True


def broadcast_notifications_bulk_create(
    *, broadcast: Broadcast, user_ids: list[int]
) -> list[Notification]:
    """One notification of `broadcast` into each of these inboxes, in the caller's
    transaction (see notifications_insert)."""
    rows = [Notification(user_id=uid, agency_id=broadcast.agency_id, broadcast=broadcast,
                         category=broadcast.category, title=broadcast.title,
                         body=broadcast.body, link=broadcast.link,
                         reference=broadcast.reference)
            for uid in sorted(set(user_ids))]
    if rows:
        notifications_insert(rows)
    return rows
