"""`POST /api/agency/v1/notifications` served in front of Django, for the common case.

This is the agency API's one operation that agencies call at volume (a national inbox:
a thousand notices a second at peak, per process). Through Django's handler and
django-ninja a POST cost the event loop more than storing and delivering its notice
(request object, eight middlewares and their wrappers, URL resolution, ninja's parameter
models, auth callbacks and response validation); the server's core saturated below
1,000 POSTs a second (bench/README.md, agency).

Here a well-formed request is answered with the same parts, minus the machinery: Django's
request object, the project's middleware that is not for browsers (the same instances'
process_request and process_response, as in settings.MIDDLEWARE), the operation's own
schema (NotificationIn) and work (agency_api.notification_accept), and the API's error
answers (error_response) and renderer. Anything else is handed to Django unchanged, body
included, so that every refusal Django and ninja give keeps its exact shape: a host not
allowed, a body too large, not JSON or not valid, no bearer key, a bad Idempotency-Key.
tests/notify/test_agency_post.py runs a matrix of requests through both and compares them.
"""

import functools
import io
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIHandler, ASGIRequest
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.utils.log import log_response
from django.utils.module_loading import import_string
from pydantic import ValidationError

from chatserver.core.errors import AppError, ServiceUnavailable
from chatserver.http.agency_api import (
    IDEMPOTENCY_KEY_RE,
    NotificationIn,
    agency_api,
    notification_accept,
)
from chatserver.http.api import error_response

log = logging.getLogger(__name__)

PATH = "/api/agency/v1/notifications"
_STORE_DOWN = (OperationalError, InterfaceError, redis.exceptions.ConnectionError,
               redis.exceptions.TimeoutError)


def handles(scope: dict[str, Any]) -> bool:
    return scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == PATH


class _Middleware:
    """The project's middleware that also runs on key-only paths, in settings order."""

    def __init__(self) -> None:
        self.chain = []
        for path in settings.MIDDLEWARE:
            cls = import_string(path)
            if not getattr(cls, "browser_only", False):
                self.chain.append(cls(lambda request: None))

    def request(self, request: HttpRequest) -> HttpResponseBase | None:
        for middleware in self.chain:
            if hasattr(middleware, "process_request"):
                response = middleware.process_request(request)
                if response is not None:
                    return response  # type: ignore[no-any-return]
        return None

    def response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        for middleware in reversed(self.chain):
            if hasattr(middleware, "process_response"):
                response = middleware.process_response(request, response)
        return response


@functools.cache  # made at the first request, when settings are final
def _middleware() -> _Middleware:
    return _Middleware()


async def serve(scope: dict[str, Any], receive: Any, send: Any, django: ASGIHandler) -> None:
    """Answer the POST, or hand it to `django` (the project's ASGI handler) with its body
    replayed."""
    body, more = await _read_body(receive, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    parsed = None if more else _well_formed(scope, body)
    if parsed is not None:
        request, payload, token, idempotency_key = parsed
        try:
            answered = _middleware().request(request) is not None
        except DisallowedHost:
            answered = True
        if not answered:
            response = await _answer(request, payload, token, idempotency_key)
            await django.send_response(response, send)
            return
    # Django answers whatever is refused before the operation, and a middleware's own answer
    await django(scope, _replay(body, more, receive), send)


async def _answer(request: HttpRequest, payload: NotificationIn, token: str,
                  idempotency_key: str | None) -> HttpResponse:
    response: HttpResponse
    try:
        accepted, replayed = await notification_accept(
            api_key=token, idempotency_key=idempotency_key, payload=payload)
        response = agency_api.create_response(request, accepted.model_dump(), status=202)
        if replayed:
            response["Idempotent-Replayed"] = "true"
    except AppError as exc:
        response = error_response(agency_api, request, exc)
    except _STORE_DOWN:
        log.exception("agency notification: a store did not answer")
        response = error_response(agency_api, request, ServiceUnavailable())
    response = _middleware().response(request, response)  # type: ignore[assignment]
    if response.status_code >= 400:
        log_response("%s: %s", response.reason_phrase, request.path, response=response,
                     request=request)
    return response


def _well_formed(scope: dict[str, Any], body: bytes
                 ) -> tuple[HttpRequest, NotificationIn, str, str | None] | None:
    """The request, its payload, bearer key and Idempotency-Key when nothing in it is
    refused before the operation runs; else None (Django answers)."""
    token = ""
    idempotency_key = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer":
                return None
        elif name == b"idempotency-key":
            idempotency_key = value.decode("latin-1")
    if not token:
        return None
    try:
        data = json.loads(body)
        if not isinstance(data, dict):
            return None
        payload = NotificationIn.model_validate(data)
    except (ValueError, ValidationError):  # not JSON, or not valid: ninja's answer
        return None
    if idempotency_key is not None and not IDEMPOTENCY_KEY_RE.match(idempotency_key):
        return None
    try:
        request = ASGIRequest(scope, io.BytesIO(body))
    except UnicodeDecodeError:
        return None
    return request, payload, token, idempotency_key


async def _read_body(receive: Any, limit: int) -> tuple[bytes, bool]:
    """(the body, whether more is coming): reading stops past `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # disconnected: Django deals with it
            return b"".join(chunks), True
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False
        if size > limit:
            return b"".join(chunks), True


def _replay(body: bytes, more: bool, receive: Any) -> Callable[[], Awaitable[dict[str, Any]]]:
    """A `receive` that gives what was read, then goes on with the client's."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()  # type: ignore[no-any-return]

    return replay

