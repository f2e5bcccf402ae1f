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
from collections import Counter
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, QuerySet
from django.utils import timezone
from pydantic import BaseModel

from chatserver.core import protocol
from chatserver.core.errors import AppError, InvalidInput, InvalidRegisterNumber, Unauthenticated
from chatserver.core.realtime import publish_many_on_commit, publish_on_commit, user_group
from chatserver.core.throttle import throttle_check_many
from identity.domain import register_parse
from identity.models import User
from identity.services import access_log_record
from notify.agency_services import agency_scope_check, api_keys_authenticate
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


@dataclass(frozen=True)
class AgencySend:
    """One agency notification to one citizen, as the agency API receives it: from an
    `agency`, or from the holder of `api_key` (checked with the batch, with its rate and
    its scopes)."""

    register_number: str
    category: str
    title: str
    body: str
    link: str = ""
    reference: str = ""
    amount_mnt: int | None = None
    due_date: date | None = None
    idempotency_key: str = ""
    agency: Agency | None = None
    api_key: str = ""


# (notification, replayed) or the error for that request alone
AgencySendOutcome = tuple[Notification, bool] | AppError


def agency_notification_send(
    *, agency: Agency, register_number: str, category: str, title: str, body: str,
    link: str = "", reference: str = "", amount_mnt: int | None = None,
    due_date: date | None = None, idempotency_key: str = "",
) -> tuple[Notification, bool]:
    """An agency's notification to one citizen: (notification, replayed). See
    agency_notifications_send_batch, which the API's writer calls for many at once."""
    [outcome] = agency_notifications_send_batch([AgencySend(
        agency=agency, register_number=register_number, category=category, title=title,
        body=body, link=link, reference=reference, amount_mnt=amount_mnt, due_date=due_date,
        idempotency_key=idempotency_key)])
    if isinstance(outcome, AppError):
        raise outcome
    return outcome


def agency_notifications_send_batch(requests: list[AgencySend]) -> list[AgencySendOutcome]:
    """Agencies' notifications, each to one citizen, stored in one transaction with a fixed
    number of statements: one outcome per request, in order.

    With an idempotency key, a retry of the same request returns the first notification
    (replayed=True), also within one batch and when duplicates race across processes: the
    unique (agency, key) index lets one INSERT win; the losing batch rolls back whole and its
    requests are stored one by one, reading the winner. Nothing is stored for a request that
    fails; the others are not affected.
    """
    outcomes: list[AgencySendOutcome | None] = [None] * len(requests)
    requests = _agencies_resolve(requests, outcomes)
    checked: list[tuple[int, AgencySend, str]] = []  # (index, request, digest)
    registers: dict[int, str] = {}
    for i, r in enumerate(requests):
        if outcomes[i] is not None:
            continue
        try:
            assert r.agency is not None
            agency_scope_check(agency=r.agency, category=r.category)
            r = replace(r, title=r.title.strip(), body=r.body.strip())
            notification_fields_validate(
                category=r.category, title=r.title, body=r.body, link=r.link,
                reference=r.reference, amount_mnt=r.amount_mnt, due_date=r.due_date)
            registers[i] = _citizen_register(r.register_number)
        except AppError as exc:
            outcomes[i] = exc
            continue
        checked.append((i, r, ""))
    users = {u.register_number: u for u in User.objects.filter(
        register_number__in=set(registers.values())).exclude(status=User.Status.CLOSED)}
    pending: list[tuple[int, AgencySend, str]] = []
    for i, r, _ in checked:
        user = users.get(registers[i])
        if user is None:
            outcomes[i] = CitizenNotFound()
            continue
        pending.append((i, r, request_digest({
            "register_number": user.register_number, "category": r.category,
            "title": r.title, "body": r.body, "link": r.link, "reference": r.reference,
            "amount_mnt": r.amount_mnt, "due_date": r.due_date})))
    keys = {(r.agency.pk, r.idempotency_key) for _, r, _ in pending  # type: ignore[union-attr]
            if r.idempotency_key}
    known: dict[tuple[int, str], Notification] = {}
    if keys:
        for n in Notification.objects.filter(
                agency_id__in={a for a, _ in keys},
                idempotency_key__in={k for _, k in keys}):
            known[n.agency_id, n.idempotency_key] = n  # type: ignore[index]
    new: list[tuple[int, Notification]] = []
    firsts: dict[tuple[int, str], int] = {}  # a key's first request in this batch
    for i, r, digest in pending:
        assert r.agency is not None
        key = (r.agency.pk, r.idempotency_key)
        if r.idempotency_key and key in known:
            existing = known[key]
            outcomes[i] = ((existing, True) if existing.request_digest == digest
                           else IdempotencyKeyReused(notification_id=existing.pk))
            continue
        if r.idempotency_key and key in firsts:
            continue  # answered from its first request's row below
        if r.idempotency_key:
            firsts[key] = i
        new.append((i, Notification(
            user=users[registers[i]], category=r.category, title=r.title, body=r.body,
            link=r.link, agency=r.agency, reference=r.reference, amount_mnt=r.amount_mnt,
            due_date=r.due_date, idempotency_key=r.idempotency_key, request_digest=digest)))
    if new:
        try:
            with transaction.atomic():
                _notifications_insert([n for _, n in new])
        except IntegrityError:
            if len(requests) == 1:  # a duplicate committed meanwhile: read the winner
                i, r, digest = pending[0]
                winner = Notification.objects.filter(
                    agency=r.agency, idempotency_key=r.idempotency_key).first()
                if not r.idempotency_key or winner is None:
                    raise
                return [(winner, True) if winner.request_digest == digest
                        else IdempotencyKeyReused(notification_id=winner.pk)]
            # Lost a race on an idempotency key: each unanswered request again, alone.
            return [o if o is not None else agency_notifications_send_batch([r])[0]
                    for r, o in zip(requests, outcomes, strict=True)]
        for i, notification in new:
            outcomes[i] = (notification, False)
    by_index = {i: n for i, n in new}
    for i, r, digest in pending:  # repeats of a key within this batch
        if outcomes[i] is None:
            first = by_index[firsts[(r.agency.pk, r.idempotency_key)]]  # type: ignore[union-attr]
            outcomes[i] = ((first, True) if first.request_digest == digest
                           else IdempotencyKeyReused(notification_id=first.pk))
    return [o for o in outcomes if o is not None]


def _agencies_resolve(requests: list[AgencySend], outcomes: list[AgencySendOutcome | None]
                      ) -> list[AgencySend]:
    """The requests with their agency: API keys checked in one query and their agencies'
    rates in one count (a refused request gets its error in `outcomes`)."""
    by_key = [i for i, r in enumerate(requests) if r.agency is None]
    if not by_key:
        return requests
    requests = list(requests)
    agencies = api_keys_authenticate([requests[i].api_key for i in by_key])
    allowed = []
    for i, agency in zip(by_key, agencies, strict=True):
        if isinstance(agency, Unauthenticated):
            outcomes[i] = agency
        else:
            requests[i] = replace(requests[i], agency=agency)
            allowed.append(i)
    refusals = throttle_check_many(
        keys=[f"agency:{requests[i].agency.pk}" for i in allowed],  # type: ignore[union-attr]
        limit=settings.SONOR_AGENCY_RATE_PER_MINUTE, window_seconds=60)
    for i, refusal in zip(allowed, refusals, strict=True):
        if refusal is not None:
            outcomes[i] = refusal
    return requests


def _citizen_register(register_number: str) -> str:
    """The normalised register number of a citizen; an organisation's is CitizenNotFound, a
    malformed one InvalidRegisterNumber."""
    try:
        return register_parse(register_number).value
    except InvalidRegisterNumber as exc:
        if register_number.strip().isdigit():  # an organisation has no inbox
            raise CitizenNotFound("A register of an organisation, not of a citizen.") from exc
        raise


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


def _notifications_insert(rows: list[Notification]) -> None:
    """Store new notifications (seq unset) in the caller's transaction: each inbox's seqs
    stay gap-free (_inbox_heads_advance); the deliveries are planned, and each citizen's
    devices get notify.new and notify.unread on commit."""
    per_user = Counter(n.user_id for n in rows)
    user_ids = sorted(per_user)
    heads = _inbox_heads_advance(per_user, user_ids)
    for n in rows:
        heads[n.user_id] += 1
        n.seq = heads[n.user_id]
    Notification.objects.bulk_create(rows)
    deliveries = deliveries_plan_many(notifications=rows)
    counts = _unread_counts(user_ids=user_ids)
    frames: list[tuple[str, BaseModel]] = []
    for n in rows:
        frames.append((user_group(n.user_id), notification_frame(n)))
    for uid in user_ids:
        frames.append((user_group(uid), protocol.NotifyUnread(count=counts.get(uid, 0))))
    publish_many_on_commit(frames)
    log.info("%s notifications stored (%s) for %s citizens, %s deliveries", len(rows),
             ", ".join(f"{n.pk}:{n.category}" for n in rows[:20]) + (", …" if len(rows) > 20
                                                                    else ""),
             len(user_ids), len(deliveries))


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
    transaction (see _notifications_insert)."""
    rows = [Notification(user_id=uid, agency_id=broadcast.agency_id, broadcast=broadcast,
                         category=broadcast.category, title=broadcast.title,
                         body=broadcast.body, link=broadcast.link,
                         reference=broadcast.reference)
            for uid in sorted(set(user_ids))]
    if rows:
        _notifications_insert(rows)
    return rows


def _unread_counts(*, user_ids: list[int]) -> dict[int, int]:
    return dict(
        Notification.objects.filter(user_id__in=user_ids, read_at__isnull=True,
                                    archived_at__isnull=True, reported_at__isnull=True)
        .values("user_id").annotate(n=Count("id")).values_list("user_id", "n"))
