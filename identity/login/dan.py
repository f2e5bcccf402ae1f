"""DAN, the national SSO: an OAuth 2.0 authorization-code flow with PKCE (Authlib's client).

    GET /dan/login     dan_login_begin: a state (kept hashed in the cache, single use) and a
                       PKCE verifier; the browser keeps both in a signed cookie and goes to
                       DAN's /oauth2/authorize with a scope naming the registry services wanted
    DAN                the citizen consents (or not) --> GET /dan/callback?code=..&state=..
    GET /dan/callback  dan_state_consume: the state matches the browser's cookie, once
                       dan_citizen_fetch: POST /oauth2/token (code, verifier, client secret),
                                          GET /oauth2/api/v1/service (bearer) --> ID card
                       dan_login_complete: the citizen by that register number (created if
                                          new), marked identity-checked by DAN, a session
                                          ("dan"), an access log entry

Every call to DAN has SONOR_DAN_TIMEOUT. The register number comes only from the registry's
answer and passes identity.domain.register_parse. Each failure is a DanError and changes
nothing. Unconfigured (SONOR_DAN_* unset), every function raises DanNotConfigured.
"""

import base64
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any

import httpx2
from authlib.integrations.httpx_client import OAuth2Client, OAuthError
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from chatserver.core.errors import AccountInactive, AppError, InvalidRegisterNumber
from identity.domain import register_parse
from identity.login.errors import LoginMethodUnavailable
from identity.models import DeviceSession, User
from identity.services import access_log_record, citizen_create, session_create, token_hash
from identity.signals import login_new

log = logging.getLogger(__name__)

METHOD = "dan"
# The state-registry (XYP) service whose answer names the citizen: the ID card.
CITIZEN_SERVICE = "WS100101_getCitizenIDCardInfo"


# ---- errors a citizen meets (the page shows `message_mn`, then `message`) ------------------

class DanNotConfigured(LoginMethodUnavailable):
    message = "DAN login is not configured on this server."
    message_mn = "Энэ серверт ДАН-аар нэвтрэх боломж тохируулагдаагүй байна."


class DanError(AppError):
    message_mn = "ДАН-аар нэвтэрч чадсангүй."


class DanConsentDenied(DanError):
    code = "dan_consent_denied"
    status = 403
    message = "You did not allow DAN to share your data, so you are not logged in."
    message_mn = "Та ДАН-д мэдээллээ хуваалцахыг зөвшөөрөөгүй тул нэвтрээгүй."


class DanStateInvalid(DanError):
    code = "dan_state_invalid"
    status = 400
    message = ("This DAN login was not started in this browser, has expired or was already "
               "used. Start again from the login page.")
    message_mn = ("Энэ ДАН-ын нэвтрэлт энэ хөтчөөс эхлээгүй, хугацаа нь дууссан эсвэл аль "
                  "хэдийн ашиглагдсан байна. Нэвтрэх хуудаснаас дахин эхлүүлнэ үү.")


class DanCodeRejected(DanError):
    code = "dan_code_rejected"
    status = 400
    message = "DAN did not accept the login code: it expired or was already used. Start again."
    message_mn = ("ДАН нэвтрэх кодыг хүлээн авсангүй: хугацаа нь дууссан эсвэл ашиглагдсан "
                  "байна. Дахин эхлүүлнэ үү.")


class DanUnavailable(DanError):
    code = "dan_unavailable"
    status = 503
    message = "DAN did not answer in time. Try again in a few minutes."
    message_mn = "ДАН систем хугацаандаа хариу өгсөнгүй. Хэдэн минутын дараа дахин оролдоно уу."


class DanAnswerInvalid(DanError):
    code = "dan_answer_invalid"
    status = 502
    message = "DAN's answer has no valid register number, so you are not logged in."
    message_mn = "ДАН-ын хариунд хүчинтэй регистрийн дугаар алга тул нэвтрүүлэх боломжгүй."


class DanAccountRefused(AccountInactive):
    """A suspended or closed account: refused with its reason (the code stays the shared one)."""

    message_mn = "Энэ бүртгэл түдгэлзсэн эсвэл хаагдсан байна."


_REFUSALS: dict[str, tuple[str, str]] = {
    User.Status.SUSPENDED: ("This account is suspended by the portal.",
                            "Таны бүртгэлийг портал түр түдгэлзүүлсэн байна."),
    User.Status.CLOSED: ("This account was closed by its owner.",
                         "Энэ бүртгэлийг эзэмшигч нь хаасан байна."),
}


def _account_refused(status: str) -> DanAccountRefused:
    message, message_mn = _REFUSALS.get(status, (AccountInactive.message,
                                                 DanAccountRefused.message_mn))
    error = DanAccountRefused(message, reason=status)
    error.message_mn = message_mn
    return error


# ---- configuration -------------------------------------------------------------------------

@dataclass(frozen=True)
class DanConfig:
    authorize_url: str
    token_url: str
    service_url: str
    client_id: str
    client_secret: str
    redirect_url: str  # empty: the caller derives it from the request
    scope: str
    timeout: float
    state_ttl: int
    pkce: bool


def dan_scope(*, wsdl: str) -> str:
    """DAN's scope: base64 of a JSON list of the registry services asked for, with their WSDL."""
    services = [{"services": [CITIZEN_SERVICE], "wsdl": wsdl}]
    return base64.b64encode(json.dumps(services).encode()).decode("ascii")


def dan_config() -> DanConfig | None:
    """The DAN client configuration, or None when a required part is unset."""
    required = {
        "authorize_url": settings.SONOR_DAN_AUTHORIZE_URL,
        "token_url": settings.SONOR_DAN_TOKEN_URL,
        "service_url": settings.SONOR_DAN_SERVICE_URL,
        "client_id": settings.SONOR_DAN_CLIENT_ID,
        "client_secret": settings.SONOR_DAN_CLIENT_SECRET,
    }
    if not all(required.values()):
        return None
    return DanConfig(
        **required, redirect_url=settings.SONOR_DAN_REDIRECT_URL,
        scope=dan_scope(wsdl=settings.SONOR_DAN_CITIZEN_WSDL),
        timeout=settings.SONOR_DAN_TIMEOUT, state_ttl=settings.SONOR_DAN_STATE_TTL,
        pkce=settings.SONOR_DAN_PKCE,
    )


def dan_configured() -> bool:
    return dan_config() is not None


def dan_config_required() -> DanConfig:
    config = dan_config()
    if config is None:
        raise DanNotConfigured(method=METHOD)
    return config


def _client(config: DanConfig, *, redirect_url: str) -> OAuth2Client:
    return OAuth2Client(
        client_id=config.client_id, client_secret=config.client_secret,
        token_endpoint_auth_method="client_secret_post", scope=config.scope,
        redirect_uri=redirect_url, code_challenge_method="S256" if config.pkce else None,
        timeout=config.timeout, follow_redirects=False,
        leeway=0,  # DAN's tokens may live under a minute; we use ours at once
    )


# ---- the flow ------------------------------------------------------------------------------

@dataclass(frozen=True)
class DanLoginStart:
    authorize_url: str  # where the browser goes
    state: str  # the browser keeps these two, signed, until DAN sends it back
    code_verifier: str


@dataclass(frozen=True)
class DanCitizen:
    register_number: str  # normalised by register_parse
    name: str


def _state_key(state: str) -> str:
    return f"dan-state:{token_hash(state)}"


def dan_login_begin(*, redirect_url: str) -> DanLoginStart:
    """A new login attempt: its state is remembered (hashed) for SONOR_DAN_STATE_TTL."""
    config = dan_config_required()
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(48) if config.pkce else ""  # 64 characters (RFC 7636)
    cache.set(_state_key(state), 1, timeout=config.state_ttl)
    with _client(config, redirect_url=redirect_url) as client:
        url, _ = client.create_authorization_url(config.authorize_url, state=state,
                                                 code_verifier=verifier or None)
    return DanLoginStart(authorize_url=url, state=state, code_verifier=verifier)


def dan_state_consume(*, returned: str, expected: str) -> None:
    """Accept DAN's `state` once: it must be the one this browser was given, and unused.

    The cache delete is the single use: atomic in Redis and under LocMem's lock, so of two
    concurrent callbacks with the same state only one gets True."""
    dan_config_required()
    if not returned or not expected or not hmac.compare_digest(returned, expected):
        raise DanStateInvalid()
    if not cache.delete(_state_key(returned)):
        raise DanStateInvalid()


def dan_citizen_fetch(*, code: str, code_verifier: str, redirect_url: str) -> DanCitizen:
    """Trade the authorization code for a token and the registry's answer about the citizen."""
    config = dan_config_required()
    if not code:
        raise DanCodeRejected()
    extra = {"code_verifier": code_verifier} if code_verifier else {}
    try:
        with _client(config, redirect_url=redirect_url) as client:
            client.fetch_token(config.token_url, code=code, **extra)
            response = client.get(config.service_url, headers={"Accept": "application/json"})
            response.raise_for_status()
            answer = response.json()
    except OAuthError as exc:
        if exc.error == "invalid_grant":  # expired, used, or not ours: the citizen starts over
            raise DanCodeRejected() from exc
        log.error("DAN refused the token request: %s %s", exc.error, exc.description)
        raise DanUnavailable() from exc
    except (httpx2.HTTPError, ValueError) as exc:  # unreachable, slow, 5xx, not JSON
        log.warning("DAN call failed: %s: %s", exc.__class__.__name__, exc)
        raise DanUnavailable() from exc
    return dan_citizen_parse(answer)


def dan_citizen_parse(answer: Any) -> DanCitizen:
    """The citizen in DAN's service answer: a JSON list whose item with `services` holds the
    ID card service's `response` (regnum, lastname, firstname, ...)."""
    service = None
    for item in answer if isinstance(answer, list) else []:
        services = item.get("services") if isinstance(item, dict) else None
        if isinstance(services, dict) and isinstance(services.get(CITIZEN_SERVICE), dict):
            service = services[CITIZEN_SERVICE]
            break
    card = service.get("response") if service is not None else None
    if service is None or str(service.get("resultCode")) != "0" or not isinstance(card, dict):
        raise DanAnswerInvalid("DAN's answer has no ID card from the state registry.")
    raw = card.get("regnum")
    if not isinstance(raw, str) or not raw.strip():
        raise DanAnswerInvalid("DAN's answer has no register number.")
    try:
        register = register_parse(raw)
    except InvalidRegisterNumber as exc:
        raise DanAnswerInvalid("DAN's answer has a malformed register number.") from exc
    names = (card.get("lastname"), card.get("firstname"))
    name = " ".join(part.strip() for part in names if isinstance(part, str) and part.strip())
    return DanCitizen(register_number=register.value, name=name[:200])


@dataclass(frozen=True)
class DanLogin:
    session: DeviceSession
    token: str  # shown only this once: it goes into the browser's cookie
    user: User
    created: bool  # a new citizen: asked to verify a phone before chatting (terms 14.2)


def dan_login_complete(*, citizen: DanCitizen, ip: str | None, device: str) -> DanLogin:
    """Log in (or sign up) the citizen DAN vouched for. A suspended or closed account is
    refused with its reason, before anything is written."""
    dan_config_required()
    with transaction.atomic():
        user = User.objects.select_for_update().filter(
            register_number=citizen.register_number).first()
        created = user is None
        if user is None:
            user = citizen_create(register_number=citizen.register_number, name=citizen.name)
        elif not user.is_active:
            raise _account_refused(user.status)
        user.identity_checked_at = timezone.now()
        user.identity_checked_by = METHOD
        user.name = user.name or citizen.name
        user.save(update_fields=["identity_checked_at", "identity_checked_by", "name"])
        session, token = session_create(user=user, login_method=METHOD, device_name=device,
                                        platform="web", ip=ip)
        access_log_record(subject=user, actor_kind="system", actor_name="ДАН (DAN)",
                          action="logged in through DAN: name and register number from the "
                                 "state registry's ID card record")
        if not created:  # a citizen who signs up has nothing to be warned about yet
            login_new.send(sender=DeviceSession, user=user, session=session, method=METHOD)
    log.info("dan login: user %s (%s), session %s", user.pk, "new" if created else "existing",
             session.pk)
    return DanLogin(session=session, token=token, user=user, created=created)
