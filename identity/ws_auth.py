"""Who is on the other end of a socket or request: bearer token or session cookie, and Origin.

Native apps send `Authorization: Bearer` and no Origin; the same-origin web client sends the
HttpOnly session cookie, and browsers always send Origin, which must be one of ours.
"""

from http.cookies import SimpleCookie
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from chatserver.core.client_address import client_address
from chatserver.core.errors import OriginForbidden
from identity.models import DeviceSession


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def bearer_from_header(value: str) -> str:
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def origin_allowed(origin: str | None) -> bool:
    return origin is None or origin in settings.SONOR_ALLOWED_ORIGINS


def scope_client(scope: dict[str, Any]) -> tuple[str | None, str]:
    """The client's IP (chatserver.core.client_address decides it) and User-Agent, for session
    records and QR approval screens."""
    return client_address(scope), _headers(scope).get("user-agent", "")[:200]


def scope_origin(scope: dict[str, Any]) -> str | None:
    return _headers(scope).get("origin")


def scope_token(scope: dict[str, Any]) -> str:
    """The socket's session token ("" if none); OriginForbidden from a foreign page."""
    headers = _headers(scope)
    origin = headers.get("origin")
    if not origin_allowed(origin):
        raise OriginForbidden()
    token = bearer_from_header(headers.get("authorization", ""))
    if not token and origin is not None:  # cookies only from our own pages
        cookie = SimpleCookie()
        cookie.load(headers.get("cookie", ""))
        morsel = cookie.get(settings.SONOR_SESSION_COOKIE)
        token = morsel.value if morsel else ""
    return token


def request_session(request: HttpRequest) -> DeviceSession:
    """The session that citizen_auth put on an authenticated API request."""
    return request.auth  # type: ignore[attr-defined, no-any-return]
