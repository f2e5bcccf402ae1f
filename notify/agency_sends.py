"""Agencies' notifications to one citizen each: the rules of a notification, idempotency
keys, register numbers to inboxes, many requests in one transaction (the agency API's writer
batches them), and the agency's read of how its notification fared."""

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from chatserver.core.api_schemas import (
    HTTPS_LINK,
    NO_CONTROLS,
    ONE_LINE,
    VISIBLE_TEXT,
    pattern_matches,
)
from chatserver.core.errors import AppError, InvalidInput, InvalidRegisterNumber, Unauthenticated
from chatserver.core.sql import fetch_rows, in_list
from chatserver.core.throttle import throttle_check_many
from identity.domain import register_parse
from identity.models import User
from identity.services import access_log_record
from notify.agency_services import agency_scope_check, api_keys_authenticate
from notify.errors import CitizenNotFound, IdempotencyKeyReused
from notify.inbox import notifications_insert
from notify.models import AGENCY_CATEGORIES, HAS_IDEMPOTENCY_KEY, Agency, Notification

TITLE_MAX = 200
BODY_MAX = 4000
LINK_MAX = 1000
REFERENCE_MAX = 100
AMOUNT_MAX = 10**12


def notification_fields_validate(
    *, category: str, title: str, body: str, link: str, reference: str = "",
    amount_mnt: int | None = None, due_date: date | None = None,
) -> None:
    """The rules of an agency notification; the API's schemas check the same, this guards
    every other caller."""
    if category not in AGENCY_CATEGORIES:
        raise InvalidInput("Unknown category.", field="category",
                           allowed=sorted(AGENCY_CATEGORIES))
    if not pattern_matches(ONE_LINE, title) or len(title) > TITLE_MAX:
        raise InvalidInput(f"The title is one line of 1 to {TITLE_MAX} characters, "
                           "without control characters.", field="title")
    if not pattern_matches(VISIBLE_TEXT, body) or len(body) > BODY_MAX:
        raise InvalidInput(f"The body is 1 to {BODY_MAX} characters, without control "
                           "characters but newline and tab.", field="body")
    if not pattern_matches(HTTPS_LINK, link) or len(link) > LINK_MAX:
        raise InvalidInput("The link must be an https:// address.", field="link")
    if not pattern_matches(NO_CONTROLS, reference) or len(reference) > REFERENCE_MAX:
        raise InvalidInput(f"The reference is at most {REFERENCE_MAX} characters, without "
                           "control characters.", field="reference")
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
    wanted = sorted(set(registers.values()))
    users = {register: user_id for user_id, register in fetch_rows(
        f"SELECT id, register_number FROM {User._meta.db_table}"
        f" WHERE register_number IN ({in_list(wanted)}) AND status <> %s",
        [*wanted, User.Status.CLOSED])} if wanted else {}
    pending: list[tuple[int, AgencySend, str]] = []
    for i, r, _ in checked:
        if registers[i] not in users:
            outcomes[i] = CitizenNotFound()
            continue
        pending.append((i, r, request_digest({
            "register_number": registers[i], "category": r.category,
            "title": r.title, "body": r.body, "link": r.link, "reference": r.reference,
            "amount_mnt": r.amount_mnt, "due_date": r.due_date})))
    keys = {(r.agency.pk, r.idempotency_key) for _, r, _ in pending  # type: ignore[union-attr]
            if r.idempotency_key}
    known: dict[tuple[int, str], Notification] = {}
    if keys:
        agency_ids, key_texts = sorted({a for a, _ in keys}), sorted({k for _, k in keys})
        # The unique index on (agency, key) is partial: SQLite uses it only for a query that
        # states its condition, and otherwise read every notification of the agency (a
        # scan that grew with the table: 0.4 ms a batch at 5,000 rows). Ids first: a key
        # is seldom known (a retry), and building models costs more than the probe.
        found = fetch_rows(
            f"SELECT id FROM {Notification._meta.db_table}"
            f" WHERE agency_id IN ({in_list(agency_ids)})"
            f" AND idempotency_key IN ({in_list(key_texts)})"
            " AND NOT (idempotency_key = '')", [*agency_ids, *key_texts])
        if found:
            for n in Notification.objects.filter(pk__in=[id_ for id_, in found]):
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
            user_id=users[registers[i]], category=r.category, title=r.title, body=r.body,
            link=r.link, agency=r.agency, reference=r.reference, amount_mnt=r.amount_mnt,
            due_date=r.due_date, idempotency_key=r.idempotency_key, request_digest=digest)))
    if new:
        try:
            with transaction.atomic():
                notifications_insert([n for _, n in new])
        except IntegrityError:
            if len(requests) == 1:  # a duplicate committed meanwhile: read the winner
                i, r, digest = pending[0]
                winner = Notification.objects.filter(
                    HAS_IDEMPOTENCY_KEY, agency=r.agency,
                    idempotency_key=r.idempotency_key).first()
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

def delivery_status_read(*, agency: Agency, notification_id: int) -> Notification:
    """The sending agency reads how its notification fared; the citizen's access log
    records the read. Other agencies get NotificationNotFound."""
    from notify.selectors import agency_notification_get

    notification = agency_notification_get(agency=agency, notification_id=notification_id)
    access_log_record(subject=notification.user, actor_kind="agency", actor_name=agency.name,
                      action=f"read delivery status of notification {notification.pk}")
    return notification
