"""The delivery pipeline: a transactional outbox sent by workers.

    notification_create --(same transaction)--> deliveries_plan: Delivery rows per channel
    worker job deliveries_process:
        claim due rows (SKIP LOCKED on PostgreSQL; a lease, so a killed worker's rows return)
        -> expired? cancelled by a read? -> Sender.send() -> record the attempt at once
        -> sent | retry later (backoff + jitter) | failed (dead letter) | invalid address

Preferences decide the channels (push on, SMS and email opt-in, security push locked on);
quiet hours (Asia/Ulaanbaatar) defer push and SMS; SMS may be an escalation sent only if
the notification is still unread after N minutes.
"""

import logging
import os
import random
import socket
from collections import defaultdict
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet, Sum
from django.utils import timezone

from chatserver.core.sql import bulk_insert, fetch_rows, in_list
from identity.models import DeviceSession, PhoneNumber, User
from identity.services import token_hash
from notify.models import (
    AgencyMute,
    Delivery,
    DeliveryAttempt,
    Device,
    Notification,
    NotifySettings,
    Preference,
    SmsBudgetDay,
)
from notify.preferences import channel_enabled
from notify.senders.base import OutboundMessage, SendResult, SendStatus
from notify.senders.registry import sender_for
from notify.sms_parts import sms_encode_parts
from notify.unsubscribe import unsubscribe_url

log = logging.getLogger(__name__)

LOCAL_TZ = ZoneInfo("Asia/Ulaanbaatar")
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


def quiet_hours_end(*, notify_settings: NotifySettings | None, now: datetime) -> datetime | None:
    """When the user's quiet hours end, if `now` falls inside them."""
    if notify_settings is None or notify_settings.quiet_start is None \
            or notify_settings.quiet_end is None:
        return None
    start, end = notify_settings.quiet_start, notify_settings.quiet_end
    local = now.astimezone(LOCAL_TZ)
    clock = local.time()
    inside = (start <= clock < end) if start < end else (clock >= start or clock < end)
    if not inside:
        return None
    end_at = datetime.combine(local.date(), end, tzinfo=LOCAL_TZ)
    if end_at <= local:
        end_at += timedelta(days=1)
    return end_at


def _validity(category: str) -> timedelta:
    hours = settings.SONOR_DELIVERY_VALIDITY_HOURS.get(
        category, settings.SONOR_DELIVERY_VALIDITY_HOURS["default"])
    return timedelta(hours=hours)


def deliveries_plan(*, notification: Notification) -> list[Delivery]:
    """Outbox rows for a new notification; the caller holds its transaction."""
    return deliveries_plan_many(notifications=[notification])


def deliveries_plan_many(*, notifications: list[Notification]) -> list[Delivery]:
    """Outbox rows for many notifications (a broadcast batch) in a fixed number of queries;
    the caller holds their transaction."""
    if not notifications:
        return []
    user_ids = sorted({n.user_id for n in notifications})
    users = in_list(user_ids)
    categories = sorted({n.category for n in notifications})
    prefs: dict[tuple[int, str], dict[str, bool]] = defaultdict(dict)
    for user_id, category, channel, enabled in fetch_rows(
            f"SELECT user_id, category, channel, enabled FROM {Preference._meta.db_table}"
            f" WHERE user_id IN ({users}) AND category IN ({in_list(categories)})",
            [*user_ids, *categories]):
        prefs[user_id, category][channel] = bool(enabled)
    notify_settings = {s.user_id: s for s in NotifySettings.objects.raw(
        f"SELECT * FROM {NotifySettings._meta.db_table} WHERE user_id IN ({users})", user_ids)}
    mutes = set(fetch_rows(f"SELECT user_id, agency_id FROM {AgencyMute._meta.db_table}"
                           f" WHERE user_id IN ({users})", user_ids))
    devices: dict[int, list[tuple[int, str]]] = defaultdict(list)
    # A logged-out device gets nothing: its session is revoked.
    for device_id, user_id, token in fetch_rows(
            f"SELECT d.id, d.user_id, d.token FROM {Device._meta.db_table} d"
            f" LEFT JOIN {DeviceSession._meta.db_table} s ON s.id = d.session_id"
            f" WHERE d.user_id IN ({users}) AND s.revoked_at IS NULL", user_ids):
        devices[user_id].append((device_id, token))
    phones = dict(fetch_rows(f"SELECT user_id, e164 FROM {PhoneNumber._meta.db_table}"
                             f" WHERE user_id IN ({users}) AND released_at IS NULL", user_ids))
    now = timezone.now()
    rows: list[Delivery] = []
    for notification in notifications:
        user_id, category = notification.user_id, notification.category
        if category != "security" and (user_id, notification.agency_id) in mutes:
            continue
        user_prefs = prefs[user_id, category]
        user_settings = notify_settings.get(user_id)
        quiet_until = None if category == "security" else quiet_hours_end(
            notify_settings=user_settings, now=now)
        expires_at = now + _validity(category)

        def add(channel: str, address: str, key: str, *, device_id: int | None = None,
                not_before: datetime | None = None, escalation: bool = False,
                notification: Notification = notification, expires_at: datetime = expires_at,
                ) -> None:
            rows.append(Delivery(
                notification=notification, channel=channel, address=address, device_id=device_id,
                dedupe_key=f"n{notification.pk}:{channel}:{key}", escalation=escalation,
                next_attempt_at=max(filter(None, [now, not_before])), expires_at=expires_at))

        if channel_enabled(prefs=user_prefs, category=category, channel="push"):
            for device_id, token in devices[user_id]:
                add("push", token, str(device_id), device_id=device_id, not_before=quiet_until)
        phone = phones.get(user_id)
        if phone and channel_enabled(prefs=user_prefs, category=category, channel="sms"):
            minutes = settings.SONOR_SMS_ESCALATION_MINUTES.get(category, 0)
            escalate_at = now + timedelta(minutes=minutes) if minutes else None
            later = max(filter(None, [quiet_until, escalate_at]), default=None)
            add("sms", phone, phone, not_before=later, escalation=bool(minutes))
        if user_settings and user_settings.email and user_settings.email_verified_at and \
                channel_enabled(prefs=user_prefs, category=category, channel="email"):
            add("email", user_settings.email, token_hash(user_settings.email)[:16])
    bulk_insert(rows)
    return rows


def deliveries_cancel_on_read(*, notification_ids: list[int]) -> int:
    """A notification read anywhere needs no push or SMS any more."""
    return Delivery.objects.filter(
        notification_id__in=notification_ids, channel__in=("push", "sms"),
        status=Delivery.Status.PENDING,
    ).update(status=Delivery.Status.CANCELLED, finished_at=timezone.now())


def _cancel_waiting(rows: QuerySet[Delivery], reason: str) -> int:
    """Cancel rows not yet handed to a worker, with the reason in the ledger. Rows a worker
    holds right now are stopped by its own check before sending (_cancel_reason)."""
    return rows.filter(status=Delivery.Status.PENDING).update(
        status=Delivery.Status.CANCELLED, finished_at=timezone.now(),
        last_error=f"cancelled: {reason}")


def _of_user(user_id: int) -> Q:
    return Q(notification__user_id=user_id) | Q(user_id=user_id)


def deliveries_on_phone_released(sender: object, *, user: User, e164: str, reason: str,
                                 **kwargs: object) -> int:
    """identity.signals.phone_released receiver: the old owner's SMS still waiting for the
    number (retries, escalations, quiet hours) must not reach its next owner."""
    cancelled = _cancel_waiting(
        Delivery.objects.filter(_of_user(user.pk), channel="sms", address=e164), reason)
    log.info("number of user %s released (%s): %s SMS cancelled", user.pk, reason, cancelled)
    return cancelled


def deliveries_on_account_closed(sender: object, *, user: User, **kwargs: object) -> int:
    """identity.signals.account_closed receiver: nothing more goes out to a closed account."""
    cancelled = _cancel_waiting(Delivery.objects.filter(_of_user(user.pk)), "account_closed")
    log.info("account of user %s closed: %s deliveries cancelled", user.pk, cancelled)
    return cancelled


def _cancel_reason(delivery: Delivery) -> str | None:
    """Why a claimed row must not be sent any more: its account is closed, or its SMS
    number is no longer the recipient's (the receivers above cancel waiting rows; this
    catches rows a worker held or had leased when the change committed)."""
    user = delivery.notification.user if delivery.notification else delivery.user
    if user is None:
        return None
    if user.status == User.Status.CLOSED:
        return "account_closed"
    if delivery.channel == "sms":
        phone = (PhoneNumber.objects.filter(user_id=user.pk, e164=delivery.address)
                 .order_by("-verified_at").values_list("released_at", "release_reason")
                 .first())
        if phone is None or phone[0] is not None:
            return "number_replaced" if phone and phone[1] == "replaced" \
                else "number_changed_hands"
    return None


# ---- the worker's side ---------------------------------------------------------------------

def deliveries_claim(*, limit: int, worker_id: str = WORKER_ID) -> list[Delivery]:
    """Lease up to `limit` due rows: pending ones whose time has come and leased ones whose
    worker died (its lease ran out)."""
    now = timezone.now()
    with transaction.atomic():
        due = Delivery.objects.filter(
            Q(status=Delivery.Status.PENDING, next_attempt_at__lte=now)
            | Q(status=Delivery.Status.SENDING, lease_until__lt=now)
        ).order_by("next_attempt_at", "pk")
        if connection.vendor == "postgresql":
            due = due.select_for_update(skip_locked=True)
        ids = list(due.values_list("pk", flat=True)[:limit])
        if not ids:
            return []
        Delivery.objects.filter(pk__in=ids).update(
            status=Delivery.Status.SENDING, leased_by=worker_id,
            lease_until=now + timedelta(seconds=settings.SONOR_DELIVERY_LEASE_SECONDS))
    return list(Delivery.objects.filter(pk__in=ids).select_related(
        "notification", "notification__user", "notification__agency", "user"))


def _finish(delivery: Delivery, worker_id: str, status: str, **fields: object) -> bool:
    """Record an outcome only while we still hold the lease (never over another worker)."""
    now = timezone.now()
    terminal = status not in (Delivery.Status.PENDING,)
    updated = Delivery.objects.filter(
        pk=delivery.pk, status=Delivery.Status.SENDING, leased_by=worker_id,
    ).update(status=status, lease_until=None,
             finished_at=now if terminal else None, **fields)
    return bool(updated)


def _outbound(delivery: Delivery) -> OutboundMessage:
    notification = delivery.notification
    user_id = notification.user_id if notification else delivery.user_id
    notify_settings = (NotifySettings.objects.filter(user_id=user_id).first()
                       if user_id is not None else None)
    private = bool(notify_settings and notify_settings.private_previews)
    remaining = int((delivery.expires_at - timezone.now()).total_seconds())
    if notification is None:  # a chat push (or the clearing of one)
        return OutboundMessage(
            kind="push", address=delivery.address, title=delivery.title,
            body="" if private else delivery.body, category="chat", data=delivery.data,
            collapse_key=f"room{delivery.room_id}", ttl_seconds=max(0, remaining),
            dedupe_key=delivery.dedupe_key)
    return OutboundMessage(
        kind=delivery.channel, address=delivery.address,
        title=notification.title,
        body="" if private and delivery.channel == "push" else notification.body,
        category=notification.category, link=notification.link,
        data={"notification_id": str(notification.pk), "seq": str(notification.seq)},
        collapse_key=f"n{notification.pk}", ttl_seconds=max(0, remaining),
        language=notify_settings.language if notify_settings else "mn",
        unsubscribe_url=unsubscribe_url(user_id=notification.user_id,
                                        category=notification.category)
        if delivery.channel == "email" else "",
        dedupe_key=delivery.dedupe_key,
    )


def _retry_delay(attempts: int, retry_after: float | None) -> timedelta:
    if retry_after:
        return timedelta(seconds=retry_after)
    base = min(settings.SONOR_DELIVERY_RETRY_CAP_SECONDS,
               settings.SONOR_DELIVERY_RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return timedelta(seconds=base * random.uniform(0.5, 1.5))  # jitter spreads retries


def delivery_record(*, delivery: Delivery, result: SendResult, started_at: datetime,
                    worker_id: str = WORKER_ID) -> None:
    """Write one send's outcome and its attempt row."""
    now = timezone.now()
    attempts = delivery.attempts + 1
    with transaction.atomic():
        if result.status == SendStatus.SENT:
            _finish(delivery, worker_id, Delivery.Status.SENT, attempts=attempts,
                    sent_at=now, provider_id=result.provider_id[:200], parts=result.parts)
        elif result.status == SendStatus.RETRY and attempts < settings.SONOR_DELIVERY_MAX_ATTEMPTS:
            _finish(delivery, worker_id, Delivery.Status.PENDING, attempts=attempts,
                    last_error=result.detail[:500],
                    next_attempt_at=now + _retry_delay(attempts, result.retry_after))
        elif result.status == SendStatus.INVALID_ADDRESS:
            _finish(delivery, worker_id, Delivery.Status.INVALID, attempts=attempts,
                    last_error=result.detail[:500])
            if delivery.device_id:  # a dead FCM token: forget the device
                Device.objects.filter(pk=delivery.device_id).delete()
        else:
            _finish(delivery, worker_id, Delivery.Status.FAILED, attempts=attempts,
                    last_error=result.detail[:500] or "out of attempts")
        DeliveryAttempt.objects.create(delivery=delivery, worker=worker_id,
                                       status=result.status, detail=result.detail[:500],
                                       started_at=started_at, finished_at=now)
    log.info("delivery %s (%s) attempt %s: %s %s", delivery.pk, delivery.channel, attempts,
             result.status, result.detail)


def _local_midnight(now: datetime) -> datetime:
    return now.astimezone(LOCAL_TZ).replace(hour=0, minute=0, second=0, microsecond=0)


def _sms_budget_reserve(delivery: Delivery) -> tuple[SmsBudgetDay, int] | None | datetime:
    """Take this SMS's parts from its agency's budget for today before it is sent: (the
    day's row, parts taken); None when no budget applies; local midnight when today's
    budget cannot take it. Check and spend are one conditional UPDATE (the row lock makes
    racing workers wait and re-check), so together they never spend more than the budget."""
    agency = delivery.notification.agency if delivery.notification else None
    if agency is None or agency.sms_daily_budget_parts is None:
        return None
    midnight = _local_midnight(timezone.now())
    # The first row of a day starts from what was already sent (rows sent before this
    # ledger existed).
    day, _ = SmsBudgetDay.objects.get_or_create(
        agency=agency, day=midnight.date(), defaults={"parts": Delivery.objects.filter(
            channel="sms", notification__agency=agency, sent_at__gte=midnight,
        ).aggregate(parts=Sum("parts"))["parts"] or 0})
    assert delivery.notification is not None  # it has an agency, so a notification
    needed = sms_encode_parts(delivery.notification.body).count
    taken = SmsBudgetDay.objects.filter(
        pk=day.pk, parts__lte=agency.sms_daily_budget_parts - needed,
    ).update(parts=F("parts") + needed)
    if not taken:
        return midnight + timedelta(days=1)
    return day, needed


def _sms_budget_settle(day: SmsBudgetDay, reserved: int, result: SendResult) -> None:
    """Give back what was not spent: all of it when the SMS did not go, the difference when
    the operator billed fewer parts (more is taken as billed)."""
    spent = result.parts if result.status == SendStatus.SENT else 0
    if spent != reserved:
        SmsBudgetDay.objects.filter(pk=day.pk).update(parts=F("parts") + (spent - reserved))


def deliveries_process(*, batch_size: int | None = None, worker_id: str = WORKER_ID) -> bool:
    """One unit of the worker: claim a batch, send each, record each at once. Whether any
    row was claimed."""
    claimed = deliveries_claim(limit=batch_size or settings.SONOR_DELIVERY_BATCH,
                               worker_id=worker_id)
    for delivery in claimed:
        now = timezone.now()
        if delivery.expires_at <= now:
            _finish(delivery, worker_id, Delivery.Status.EXPIRED)
            log.info("delivery %s expired unsent", delivery.pk)
            continue
        if delivery.notification and delivery.channel in ("push", "sms") \
                and delivery.notification.read_at is not None:
            _finish(delivery, worker_id, Delivery.Status.CANCELLED)
            continue
        if reason := _cancel_reason(delivery):
            _finish(delivery, worker_id, Delivery.Status.CANCELLED,
                    last_error=f"cancelled: {reason}")
            continue
        budget = _sms_budget_reserve(delivery) if delivery.channel == "sms" else None
        if isinstance(budget, datetime):
            _finish(delivery, worker_id, Delivery.Status.PENDING, next_attempt_at=budget,
                    last_error="the agency's daily SMS budget is used up")
            continue
        result = async_to_sync(sender_for(delivery.channel).send)(_outbound(delivery))
        if budget is not None:
            _sms_budget_settle(*budget, result)
        delivery_record(delivery=delivery, result=result, started_at=now, worker_id=worker_id)
    return bool(claimed)
