"""QR login, for the approving device: look the scanned code up, then approve or deny it."""

from datetime import datetime

from django.http import HttpRequest
from ninja import Router, Schema, Status
from pydantic import Field

from identity.login import qr
from identity.ws_auth import request_session

router = Router(tags=["qr login"])


class QrTokenIn(Schema):
    # The token, or the QR's whole text (`sonor-login:<token>`).
    token: str = Field(min_length=1, max_length=100)


class QrLookupOut(Schema):
    """Who is asking to log in: shown on the approving device before it approves."""

    requester_device: str
    requester_ip: str | None
    requested_at: datetime
    expires_at: datetime


class QrApprovedOut(Schema):
    """The session just created for the web page; it can be ended from `sessions`."""

    session_id: int
    device_name: str
    ip: str | None
    created_at: datetime


@router.post("lookup", response=QrLookupOut)
def qr_lookup(request: HttpRequest, payload: QrTokenIn) -> QrLookupOut:
    login = qr.qr_lookup(session=request_session(request), token=payload.token)
    return QrLookupOut(requester_device=login.requester_device, requester_ip=login.requester_ip,
                       requested_at=login.created_at, expires_at=login.expires_at)


@router.post("approve", response=QrApprovedOut)
def qr_approve(request: HttpRequest, payload: QrTokenIn) -> QrApprovedOut:
    created = qr.qr_approve(session=request_session(request), token=payload.token)
    return QrApprovedOut(session_id=created.pk, device_name=created.device_name, ip=created.ip,
                         created_at=created.created_at)


@router.post("deny", response={204: None})
def qr_deny(request: HttpRequest, payload: QrTokenIn) -> Status[None]:
    qr.qr_deny(session=request_session(request), token=payload.token)
    return Status(204, None)
