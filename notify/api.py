"""Citizen API of the inbox (/api/v1/inbox...) and the data export (/api/v1/export)."""

import json
from datetime import date, datetime
from typing import Any, Literal

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Query, Router, Schema
from pydantic import ConfigDict, Field, StrictBool, model_validator

from chatserver.core.api_schemas import ErrorOut, IdIn, VisibleText
from identity.ws_auth import request_session
from notify import selectors
from notify.inbox import (
    REPORT_REASON_MAX,
    notification_archive,
    notification_report,
    notifications_mark_all_read,
    notifications_mark_read,
    unread_count,
)
from notify.models import Notification

router = Router(tags=["inbox"])

CategoryName = Literal["service_request", "petition", "complaint", "payment", "system",
                       "security", "chat"]


class AgencyRef(Schema):
    id: int
    name: str


class DeliveryOut(Schema):
    """How a copy of this notification went out by push, SMS or email."""

    channel: str
    status: str
    sent_at: datetime | None


class InboxItemOut(Schema):
    id: int
    seq: int
    category: str
    title: str
    body: str
    link: str
    created_at: datetime
    read_at: datetime | None
    archived_at: datetime | None
    agency: AgencyRef | None
    reference: str
    amount_mnt: int | None
    due_date: date | None
    maintenance_at: datetime | None
    deliveries: list[DeliveryOut]

    @staticmethod
    def of(n: Notification) -> "InboxItemOut":
        return InboxItemOut(
            id=n.pk, seq=n.seq, category=n.category, title=n.title, body=n.body, link=n.link,
            created_at=n.created_at, read_at=n.read_at, archived_at=n.archived_at,
            agency=AgencyRef(id=n.agency.pk, name=n.agency.name) if n.agency else None,
            reference=n.reference, amount_mnt=n.amount_mnt, due_date=n.due_date,
            maintenance_at=n.broadcast.maintenance_at if n.broadcast else None,
            deliveries=[DeliveryOut(channel=d.channel, status=d.status, sent_at=d.sent_at)
                        for d in n.deliveries.all()],
        )


class InboxPageOut(Schema):
    items: list[InboxItemOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next, older page.")
    unread: int


class InboxFilters(Schema):
    cursor: str | None = Field(None, max_length=100)
    category: CategoryName | None = None
    unread: bool | None = None
    agency: int | None = None
    archived: bool = False
    limit: int = Field(50, ge=1, le=100)


class InboxReadIn(Schema):
    """Either `ids` (at most 500) or `all: true`."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [
        {"required": ["ids"], "properties": {"ids": {"type": "array"},
                                             "all": {"const": False}}},
        {"required": ["all"], "properties": {"all": {"const": True},
                                             "ids": {"type": "null"}}},
    ]})

    ids: list[IdIn] | None = Field(None, min_length=1, max_length=500)
    all: StrictBool = False

    @model_validator(mode="after")
    def one_of(self) -> "InboxReadIn":
        if bool(self.ids) == self.all:
            raise ValueError("give either ids or all: true")
        return self


class InboxReadOut(Schema):
    updated: int
    unread: int


class InboxReportIn(Schema):
    reason: VisibleText = Field(min_length=1, max_length=REPORT_REASON_MAX)


class InboxReportOut(Schema):
    id: int
    reported_at: datetime
    unread: int


ERRORS: dict[int, type[Schema]] = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut,
                                   422: ErrorOut}


@router.get("inbox", response={200: InboxPageOut, **ERRORS})
def inbox(request: HttpRequest, filters: Query[InboxFilters]) -> InboxPageOut:
    """The inbox, newest first, a page at a time. Reported notifications are not listed;
    archived ones only with `archived=true`."""
    user = request_session(request).user
    rows, next_cursor = selectors.inbox_page(
        user=user, cursor=filters.cursor, limit=filters.limit, category=filters.category,
        unread=filters.unread, agency_id=filters.agency, archived=filters.archived)
    return InboxPageOut(items=[InboxItemOut.of(n) for n in rows], next_cursor=next_cursor,
                        unread=unread_count(user=user))


@router.post("inbox/read", response={200: InboxReadOut, **ERRORS})
def inbox_read(request: HttpRequest, payload: InboxReadIn) -> InboxReadOut:
    """Mark notifications read; every device of the user gets `notify.unread`."""
    user = request_session(request).user
    if payload.all:
        updated = notifications_mark_all_read(user=user)
    else:
        updated = notifications_mark_read(user=user, ids=payload.ids or [])
    return InboxReadOut(updated=updated, unread=unread_count(user=user))


@router.post("inbox/{id:notification_id}/archive", response={200: InboxItemOut, **ERRORS})
def inbox_archive(request: HttpRequest, notification_id: int) -> InboxItemOut:
    notification = notification_archive(user=request_session(request).user,
                                        notification_id=notification_id)
    return InboxItemOut.of(notification)


@router.post("inbox/{id:notification_id}/report", response={200: InboxReportOut, **ERRORS})
def inbox_report(request: HttpRequest, notification_id: int, payload: InboxReportIn
                 ) -> InboxReportOut:
    """This notification was meant for someone else (misaddressed): it leaves the inbox and
    the unread count, and the sending agency and staff see the report."""
    user = request_session(request).user
    notification = notification_report(user=user, notification_id=notification_id,
                                       reason=payload.reason)
    assert notification.reported_at is not None
    return InboxReportOut(id=notification.pk, reported_at=notification.reported_at,
                     unread=unread_count(user=user))


@router.get("export", response={200: dict[str, Any], **ERRORS})
def export(request: HttpRequest) -> HttpResponse:
    """Everything kept about the user, as a JSON download: profile, phones, sessions, inbox,
    access log (and whatever other packages register in notify.selectors.EXPORT_SECTIONS)."""
    data = selectors.user_data_export(user=request_session(request).user)
    response = HttpResponse(json.dumps(data, cls=DjangoJSONEncoder, ensure_ascii=False,
                                       indent=1),
                            content_type="application/json; charset=utf-8")
    stamp = timezone.localdate().isoformat()
    response["Content-Disposition"] = f'attachment; filename="sonor-export-{stamp}.json"'
    response["Cache-Control"] = "no-store"
    return response
