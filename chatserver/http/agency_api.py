"""The agency API /api/agency/v1: notifications to one citizen, their delivery status, and
broadcasts. Authenticated by an agency API key (`Authorization: Bearer sk_...`), each key
scoped to its agency, and rate-limited per agency across processes."""

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from ninja import Header, Schema, Status
from ninja.security import HttpBearer
from pydantic import (
    AwareDatetime,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from chatserver.core.api_schemas import (
    REGISTER_NUMBER,
    ErrorOut,
    HttpsLink,
    OneLineText,
    PlainStr,
    VisibleText,
)
from chatserver.core.batching import batcher
from chatserver.core.errors import InvalidInput
from chatserver.core.throttle import throttle_check
from chatserver.http.api import SonorApi, error_response, install_error_handlers
from notify import agency_sends, broadcasts, selectors
from notify.agency_services import agency_scope_check, api_key_authenticate
from notify.errors import PayloadTooLarge
from notify.models import Agency, Broadcast, Notification

notification_writer = batcher(agency_sends.agency_notifications_send_batch,
                              what="agency notifications")
IDEMPOTENCY_KEY_RE = re.compile(r"^[\x21-\x7e]{1,200}$")
# Checked by _idempotency_key (400 with the field named); the document states the rule.
IdempotencyKey = Annotated[str | None, WithJsonSchema({
    "type": "string", "pattern": IDEMPOTENCY_KEY_RE.pattern,
    "description": "1 to 200 printable ASCII characters, no spaces."})]


def _key_check(token: str) -> Agency:
    """The key's agency, within its rate (per agency, shared by every process)."""
    agency = api_key_authenticate(key=token)
    throttle_check(key=f"agency:{agency.pk}", limit=settings.SONOR_AGENCY_RATE_PER_MINUTE,
                   window_seconds=60)
    return agency


class AgencyKeyAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Agency:
        return _key_check(token)


class BatchedAgencyKeyAuth(HttpBearer):
    """Hands the key on: the notification batch checks it, with its rate (one query and one
    count for every request in the batch)."""

    async def authenticate(self, request: HttpRequest, token: str) -> str:  # type: ignore[override]
        return token


agency_api = SonorApi(
    title="Sonor agency API", version="1", urls_namespace="agency_api", auth=AgencyKeyAuth(),
    docs_url="/docs",
    description="For member organisations: notify a citizen by register number, read the "
                "delivery status, send broadcasts. Errors are `{code, message, extra}`.",
)
install_error_handlers(agency_api)
agency_api.add_exception_handler(
    RequestDataTooBig, lambda r, e: error_response(agency_api, r, PayloadTooLarge()))


def _agency(request: HttpRequest) -> Agency:
    return request.auth  # type: ignore[attr-defined, no-any-return]


def _idempotency_key(value: str | None) -> str:
    if value is None:
        return ""
    if not IDEMPOTENCY_KEY_RE.match(value):
        raise InvalidInput("Idempotency-Key is 1 to 200 printable ASCII characters.",
                           field="Idempotency-Key")
    return value


ERRORS: dict[int, type[Schema]] = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut,
                                   409: ErrorOut, 413: ErrorOut, 422: ErrorOut, 429: ErrorOut}

AgencyCategory = Literal["service_request", "petition", "complaint", "payment", "system",
                         "security"]


class _In(Schema):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    # Each pattern is checked on the value as sent, before leading and trailing spaces are
    # stripped (stripping would also remove some control characters).
    title: OneLineText = Field(min_length=1, max_length=agency_sends.TITLE_MAX)
    body: VisibleText = Field(min_length=1, max_length=agency_sends.BODY_MAX)
    link: HttpsLink = Field("", max_length=agency_sends.LINK_MAX, description="https:// only")
    reference: PlainStr = Field("", max_length=agency_sends.REFERENCE_MAX,
                                description="The agency's own request number.")


class NotificationIn(_In):
    # A payment notice needs its amount and due date.
    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"properties": {"category": {"not": {"const": "payment"}}}},
        {"required": ["amount_mnt", "due_date"],
         "properties": {"amount_mnt": {"type": "integer"}, "due_date": {"type": "string"}}},
    ]})

    register_number: str = Field(max_length=20, json_schema_extra=REGISTER_NUMBER)
    category: AgencyCategory
    amount_mnt: int | None = Field(None, gt=0, le=agency_sends.AMOUNT_MAX,
                                   description="Payments: the amount in tögrög.")
    due_date: date | None = Field(None, description="Payments: when it is due.")

    @model_validator(mode="after")
    def payment_fields(self) -> "NotificationIn":
        if self.category == "payment" and (self.amount_mnt is None or self.due_date is None):
            raise ValueError("a payment notice needs amount_mnt and due_date")
        return self


class NotificationAccepted(Schema):
    id: int
    created_at: datetime


class AttemptOut(Schema):
    at: datetime
    status: str
    detail: str


class ChannelStatusOut(Schema):
    """One delivery channel: `inbox` always, then one entry per push, SMS or email delivery
    the citizen's preferences asked for."""

    channel: str
    status: str
    stored_at: datetime | None = None
    read_at: datetime | None = None
    archived_at: datetime | None = None
    reported_at: datetime | None = None
    report_reason: str | None = None
    sent_at: datetime | None = None
    next_attempt_at: datetime | None = None
    expires_at: datetime | None = None
    parts: int | None = Field(None, description="SMS parts billed")
    attempts: list[AttemptOut]


class NotificationStatusOut(Schema):
    id: int
    reference: str
    category: str
    title: str
    created_at: datetime
    reported: bool
    recipient_identity_checked_by: str | None = Field(
        description='"dan" when the recipient logged in through DAN, so their identity was '
                    "matched against the state registry; null when it never was")
    channels: list[ChannelStatusOut]


class BroadcastIn(_In):
    # register_numbers go with audience `list` (and only with it); maintenance_at with
    # category `system` (and only with it).
    model_config = ConfigDict(json_schema_extra={"allOf": [
        {"oneOf": [
            {"properties": {"audience": {"const": "all"},
                            "register_numbers": {"type": "null"}}},
            {"required": ["register_numbers"],
             "properties": {"audience": {"const": "list"},
                            "register_numbers": {"type": "array", "minItems": 1}}},
        ]},
        {"oneOf": [
            {"properties": {"category": {"not": {"const": "system"}},
                            "maintenance_at": {"type": "null"}}},
            {"required": ["maintenance_at"],
             "properties": {"category": {"const": "system"},
                            "maintenance_at": {"type": "string"}}},
        ]},
    ]})

    category: Literal["service_request", "petition", "complaint", "system", "security"]
    audience: Literal["all", "list"]
    register_numbers: list[str] | None = Field(
        None, max_length=settings.SONOR_BROADCAST_MAX_RECIPIENTS,
        description="With audience `list`: the citizens' register numbers.",
        json_schema_extra={"items": {"type": "string", **REGISTER_NUMBER}})
    starts_at: AwareDatetime | None = Field(None, description="Default: now.")
    maintenance_at: AwareDatetime | None = Field(
        None, description="Category system: when the maintenance begins; at least two "
                          "working days (Asia/Ulaanbaatar) after starts_at.")

    @model_validator(mode="after")
    def audience_list(self) -> "BroadcastIn":
        if (self.audience == "list") != (self.register_numbers is not None):
            raise ValueError("register_numbers go with audience list, and only with it")
        return self


class BroadcastOut(Schema):
    id: int
    status: str
    category: str
    title: str
    reference: str
    audience: str
    starts_at: datetime
    maintenance_at: datetime | None
    total: int
    done: int
    delivered: int
    skipped: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancelled_at: datetime | None

    @staticmethod
    def of(b: Broadcast) -> "BroadcastOut":
        return BroadcastOut(
            id=b.pk, status=b.status, category=b.category, title=b.title,
            reference=b.reference, audience=b.audience, starts_at=b.starts_at,
            maintenance_at=b.maintenance_at, total=b.total, done=b.done,
            delivered=b.delivered, skipped=b.skipped, created_at=b.created_at,
            started_at=b.started_at, finished_at=b.finished_at, cancelled_at=b.cancelled_at)


def _status_of(n: Notification) -> NotificationStatusOut:
    inbox: dict[str, Any] = selectors.inbox_delivery_status(n)
    return NotificationStatusOut(
        id=n.pk, reference=n.reference, category=n.category, title=n.title,
        created_at=n.created_at, reported=n.reported_at is not None,
        recipient_identity_checked_by=n.user.identity_checked_by or None,
        channels=[ChannelStatusOut(**inbox)] + [
            ChannelStatusOut(**row) for row in selectors.delivery_channels_status(n)])


@agency_api.post("notifications", response={202: NotificationAccepted, **ERRORS},
                 tags=["notifications"], auth=BatchedAgencyKeyAuth())
async def notification_send(
    request: HttpRequest, payload: NotificationIn, response: HttpResponse,
    idempotency_key: IdempotencyKey = Header(None, alias="Idempotency-Key"),  # noqa: B008
) -> Status[NotificationAccepted]:
    """Notify one citizen. With an `Idempotency-Key`, a retry returns the first answer
    (header `Idempotent-Replayed: true`); the same key with a different body is 409.
    A category outside the key's scopes is 403 `scope_forbidden`, whatever the citizen.
    An unknown register number, a closed account and an organisation's register all answer
    404 `citizen_not_found`, alike. Requests from every connection are stored in batches
    (one transaction each); 202 comes after the commit."""
    accepted, replayed = await notification_accept(
        api_key=request.auth, idempotency_key=idempotency_key, payload=payload)  # type: ignore[attr-defined]
    if replayed:
        response["Idempotent-Replayed"] = "true"
    return Status(202, accepted)


async def notification_accept(*, api_key: str, idempotency_key: str | None,
                              payload: NotificationIn) -> tuple[NotificationAccepted, bool]:
    """notification_send's work, also done by the ASGI endpoint in front of Django
    (agency_post.py): (the answer, whether it is a replay). AppError for a refusal."""
    notification, replayed = await notification_writer().send(agency_sends.AgencySend(
        api_key=api_key, register_number=payload.register_number,
        category=payload.category, title=payload.title, body=payload.body, link=payload.link,
        reference=payload.reference, amount_mnt=payload.amount_mnt, due_date=payload.due_date,
        idempotency_key=_idempotency_key(idempotency_key),
    ))
    return NotificationAccepted(id=notification.pk, created_at=notification.created_at), replayed


@agency_api.get("notifications/{id:notification_id}", response={200: NotificationStatusOut,
                                                             **ERRORS}, tags=["notifications"])
def notification_status(request: HttpRequest, notification_id: int) -> NotificationStatusOut:
    """Delivery status per channel, for the sending agency only. Each read is written to the
    citizen's access log."""
    return _status_of(agency_sends.delivery_status_read(agency=_agency(request),
                                                        notification_id=notification_id))


@agency_api.post("broadcasts", response={202: BroadcastOut, **ERRORS}, tags=["broadcasts"])
def broadcast_create(
    request: HttpRequest, payload: BroadcastIn, response: HttpResponse,
    idempotency_key: IdempotencyKey = Header(None, alias="Idempotency-Key"),  # noqa: B008
) -> Status[BroadcastOut]:
    """Schedule a broadcast to all citizens or a list; workers fan it out in batches and
    `GET broadcasts/{id}` shows done/total. The agency's scopes limit its categories, and
    only agencies that staff allow may broadcast to `all`."""
    agency_scope_check(agency=_agency(request), category=payload.category,
                       audience=payload.audience)
    broadcast, replayed = broadcasts.broadcast_create(
        agency=_agency(request), category=payload.category, title=payload.title,
        body=payload.body, link=payload.link, reference=payload.reference,
        register_numbers=payload.register_numbers, starts_at=payload.starts_at,
        maintenance_at=payload.maintenance_at,
        idempotency_key=_idempotency_key(idempotency_key),
    )
    if replayed:
        response["Idempotent-Replayed"] = "true"
    return Status(202, BroadcastOut.of(broadcast))


@agency_api.get("broadcasts/{id:broadcast_id}", response={200: BroadcastOut, **ERRORS},
                tags=["broadcasts"])
def broadcast_status(request: HttpRequest, broadcast_id: int) -> BroadcastOut:
    return BroadcastOut.of(selectors.broadcast_get(agency=_agency(request),
                                                   broadcast_id=broadcast_id))


@agency_api.post("broadcasts/{id:broadcast_id}/cancel", response={200: BroadcastOut, **ERRORS},
                 tags=["broadcasts"])
def broadcast_cancel(request: HttpRequest, broadcast_id: int) -> BroadcastOut:
    """Cancel before it starts; a running one stops before its next batch."""
    return BroadcastOut.of(broadcasts.broadcast_cancel(agency=_agency(request),
                                                       broadcast_id=broadcast_id))
