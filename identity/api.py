"""Citizen API: me, phone verification, sessions (logout), account, access log."""

from datetime import datetime

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from ninja import Router, Schema, Status
from pydantic import Field

from chatserver.core.api_schemas import PHONE
from chatserver.core.errors import OriginForbidden
from chatserver.core.web import session_cookie_set
from identity import accounts, selectors, services
from identity.ws_auth import origin_allowed, request_session

router = Router(tags=["identity"])


class MeOut(Schema):
    id: int
    register_number: str
    name: str
    phone: str | None
    session_id: int
    identity_checked_by: str | None = Field(
        description='"dan" once the citizen logged in through DAN (matched against the state '
                    "registry); null otherwise")
    identity_checked_at: datetime | None


class PhoneIn(Schema):
    phone: str = Field(max_length=32, json_schema_extra=PHONE)


class PhoneVerifyIn(Schema):
    phone: str = Field(max_length=32, json_schema_extra=PHONE)
    code: str = Field(max_length=12, json_schema_extra={"pattern": "^[0-9]{6}$"},
                      description="The six digits of the SMS.")


class PhoneStartOut(Schema):
    phone: str
    expires_at: datetime


class PhoneOut(Schema):
    phone: str
    verified_at: datetime


class SessionOut(Schema):
    id: int
    device_name: str
    platform: str
    login_method: str
    ip: str | None
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime = Field(description="Ends then, however much it is used.")
    idle_expires_at: datetime = Field(description="Ends then unless used before.")
    current: bool


class RevokedOut(Schema):
    revoked: int


class AccessLogOut(Schema):
    actor_kind: str
    actor_name: str
    action: str
    created_at: datetime


class AccountCloseIn(Schema):
    code: str = Field("", max_length=12, description="The code sent by account/close/code.")


class CookieIn(Schema):
    token: str = Field(max_length=100)


@router.get("me", response=MeOut)
def me(request: HttpRequest) -> MeOut:
    session = request_session(request)
    user = session.user
    return MeOut(id=user.pk, register_number=user.register_number, name=user.name,
                 phone=services.phone_current(user=user), session_id=session.pk,
                 identity_checked_by=user.identity_checked_by or None,
                 identity_checked_at=user.identity_checked_at)


@router.post("phones", response={202: PhoneStartOut})
def phone_start(request: HttpRequest, payload: PhoneIn) -> Status[PhoneStartOut]:
    verification = services.phone_verification_start(user=request_session(request).user,
                                                     phone=payload.phone)
    return Status(202, PhoneStartOut(phone=verification.e164,
                                     expires_at=verification.expires_at))


@router.post("phones/verify", response=PhoneOut)
def phone_verify(request: HttpRequest, payload: PhoneVerifyIn) -> PhoneOut:
    phone = services.phone_verification_confirm(user=request_session(request).user,
                                                phone=payload.phone, code=payload.code)
    return PhoneOut(phone=phone.e164, verified_at=phone.verified_at)


@router.get("sessions", response=list[SessionOut])
def sessions(request: HttpRequest) -> list[SessionOut]:
    current = request_session(request)
    return [
        SessionOut(id=s.pk, device_name=s.device_name, platform=s.platform,
                   login_method=s.login_method, ip=s.ip, created_at=s.created_at,
                   last_seen_at=s.last_seen_at, expires_at=selectors.session_expires_at(s),
                   idle_expires_at=selectors.session_idle_expires_at(s),
                   current=s.pk == current.pk)
        for s in selectors.session_list(user=current.user)
    ]


@router.delete("sessions/{id:session_id}", response={204: None})
def session_delete(request: HttpRequest, session_id: int) -> Status[None]:
    session = selectors.session_get_own(user=request_session(request).user, session_id=session_id)
    services.session_revoke(session=session)
    return Status(204, None)


@router.post("sessions/revoke-others", response=RevokedOut)
def sessions_revoke_others(request: HttpRequest) -> RevokedOut:
    return RevokedOut(revoked=services.sessions_revoke_others(session=request_session(request)))


@router.post("logout", response={204: None})
def logout(request: HttpRequest, response: HttpResponse) -> Status[None]:
    services.session_revoke(session=request_session(request))
    response.delete_cookie(settings.SONOR_SESSION_COOKIE, samesite="Strict")
    return Status(204, None)


@router.post("account/close/code", response={202: PhoneStartOut})
def account_close_code(request: HttpRequest) -> Status[PhoneStartOut]:
    """Send a code to the verified phone that confirms `account/close`."""
    verification = accounts.session_account_close_code(session=request_session(request))
    return Status(202, PhoneStartOut(phone=verification.e164,
                                     expires_at=verification.expires_at))


@router.post("account/close", response={204: None})
def account_close(request: HttpRequest, payload: AccountCloseIn | None = None
                  ) -> Status[None]:
    """Close the account (every session ends; the data is kept, as the terms require).
    Needs `code` from `account/close/code`, unless this session logged in minutes ago."""
    accounts.account_close_confirmed(session=request_session(request),
                           code=payload.code if payload else "")
    return Status(204, None)


@router.get("access-log", response=list[AccessLogOut])
def access_log(request: HttpRequest) -> list[AccessLogOut]:
    return [AccessLogOut(actor_kind=e.actor_kind, actor_name=e.actor_name, action=e.action,
                         created_at=e.created_at)
            for e in selectors.access_log_list(user=request_session(request).user)]


@router.post("auth/cookie", auth=None, response={204: None})
def auth_cookie(request: HttpRequest, payload: CookieIn, response: HttpResponse
                ) -> Status[None]:
    """The web client trades the token it got over its login socket for an HttpOnly cookie,
    so that no script keeps it. Only from our own origin."""
    origin = request.headers.get("Origin")
    if origin is None or not origin_allowed(origin):
        raise OriginForbidden()
    services.session_authenticate(token=payload.token)
    session_cookie_set(response, payload.token)
    return Status(204, None)
