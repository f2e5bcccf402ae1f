"""The citizen API /api/v1: one NinjaAPI, authentication, and the AppError mapper.

Routers live in each package's api.py; views there parse, call one service, shape the answer.
Every answer of both APIs (/api/v1, /api/agency/v1) that is not a success is JSON in the
ErrorOut shape, including a path or method the API does not have and a database that does
not answer (503, retry), and every operation's OpenAPI entry documents those answers.
"""

import functools
from collections.abc import Callable
from typing import Any

import redis
from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.urls import register_converter
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.parser import Parser

from chatserver.core.api_schemas import ErrorOut
from chatserver.core.errors import (
    AppError,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    OriginForbidden,
    ServiceUnavailable,
    Unauthenticated,
)
from identity.models import DeviceSession
from identity.services import session_authenticate
from identity.ws_auth import bearer_from_header, origin_allowed

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class IdConverter:
    """`{id:room_id}` in a route: a database id (up to 18 digits, within a 64-bit integer).
    A longer number is no id of ours: the path answers 404 like any unknown one."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")


def request_session_authenticate(request: HttpRequest) -> DeviceSession:
    """Bearer token (apps) or the HttpOnly cookie (our web client; Origin-checked against
    cross-site requests on every unsafe method)."""
    token = bearer_from_header(request.headers.get("Authorization", ""))
    if not token:
        token = request.COOKIES.get(settings.SONOR_SESSION_COOKIE, "")
        if token and request.method not in SAFE_METHODS:
            origin = request.headers.get("Origin")
            if origin is None or not origin_allowed(origin):
                raise OriginForbidden()
    return session_authenticate(token=token)


def citizen_auth(request: HttpRequest) -> DeviceSession:
    session = request_session_authenticate(request)
    request.user = session.user
    return session


def error_response(api: NinjaAPI, request: HttpRequest, exc: AppError) -> HttpResponse:
    response = api.create_response(request, exc.as_dict(), status=exc.status)
    if (retry_after := exc.retry_after_header()) is not None:
        response["Retry-After"] = retry_after
    return response


def install_error_handlers(api: NinjaAPI) -> None:
    api.add_exception_handler(AppError, lambda r, e: error_response(api, r, e))
    # A database or Redis that does not answer (restarting, failing over): retry.
    for db_error in (OperationalError, InterfaceError, redis.exceptions.ConnectionError,
                     redis.exceptions.TimeoutError):
        api.add_exception_handler(
            db_error, lambda r, e: error_response(api, r, ServiceUnavailable()))

    def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        """Ninja's own HTTP errors (a body that is not JSON) in our error shape."""
        error = InvalidInput(exc.message)
        error.status = exc.status_code
        if exc.status_code != 400:
            error.code = "http_error"
        return error_response(api, request, error)

    api.add_exception_handler(HttpError, http_error)

    def invalid(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
        return api.create_response(
            request,
            {"code": "invalid_input", "message": "The request is not valid.",
             "extra": {"errors": exc.errors}},
            status=422,
        )

    api.add_exception_handler(NinjaValidationError, invalid)
    api.add_exception_handler(
        AuthenticationError, lambda r, e: error_response(api, r, Unauthenticated()))


# Answers any operation may give besides its own, all in the ErrorOut shape.
ERROR_ANSWERS: dict[int, str] = {
    400: "Refused by a rule of the operation (`code` says which; `extra` may name the field)",
    401: "No valid session or API key",
    403: "Not allowed for this caller",
    404: "Not found, or not visible to this caller",
    409: "In conflict with the current state",
    410: "Gone: a code or link that expired",
    413: "The body is too large",
    422: "The request does not match this document (`extra.errors` lists where)",
    429: "Too many requests: retry after `extra.retry_after` seconds (also `Retry-After`)",
    503: "A store or an outside service did not answer; nothing was done: retry after "
         "`extra.retry_after` seconds (also `Retry-After`)",
}


class ObjectBodyParser(Parser):
    """Every request body of both APIs is a JSON object: anything else is refused (400)
    before it reaches a schema that might take it for an empty object."""

    def parse_body(self, request: HttpRequest) -> Any:
        data = super().parse_body(request)
        if not isinstance(data, dict):
            raise ValueError("the body is not a JSON object")
        return data


class SonorApi(NinjaAPI):
    """A NinjaAPI whose bodies are JSON objects and whose OpenAPI document lists
    ERROR_ANSWERS on every operation."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(parser=ObjectBodyParser(), **kwargs)

    def get_openapi_schema(self, *args: Any, **kwargs: Any) -> Any:
        schema = super().get_openapi_schema(*args, **kwargs)
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.setdefault("ErrorOut", ErrorOut.model_json_schema())
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
        for path_item in schema["paths"].values():
            for operation in path_item.values():
                # An optional body is left out, not sent as null (ObjectBodyParser).
                for content in operation.get("requestBody", {}).get("content", {}).values():
                    variants = content["schema"].get("anyOf", [])
                    if {"type": "null"} in variants and len(variants) == 2:
                        content["schema"] = next(v for v in variants if v != {"type": "null"})
                responses = operation.setdefault("responses", {})
                for status, description in ERROR_ANSWERS.items():
                    responses[status] = {"description": description, "content": error}
        return schema


def json_error_urls(api: NinjaAPI) -> tuple[list[Any], str, str]:
    """`api.urls`, where a method the path does not take is answered 405 in JSON."""
    patterns, app_name, namespace = api.urls
    for pattern in patterns:
        pattern.callback = _json_not_allowed(pattern.callback)
    return patterns, app_name, namespace


def _json_not_allowed(view: Callable[..., Any]) -> Callable[..., Any]:
    if iscoroutinefunction(view):  # a path with an async operation (agency notifications)
        @functools.wraps(view)
        async def wrapped_async(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            return _method_not_allowed_as_json(await view(request, *args, **kwargs))

        return wrapped_async

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return _method_not_allowed_as_json(view(request, *args, **kwargs))

    return wrapped


def _method_not_allowed_as_json(response: HttpResponse) -> HttpResponse:
    if isinstance(response, HttpResponseNotAllowed):
        allowed = response["Allow"]
        response = JsonResponse(MethodNotAllowed(allowed=allowed.split(", ")).as_dict(),
                                status=405)
        response["Allow"] = allowed
    return response


@csrf_exempt
def api_path_not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    """Any other path under an API prefix: 404 in the API's error shape, not a web page."""
    return JsonResponse(NotFound("No such API path.").as_dict(), status=404)


citizen_api = SonorApi(
    title="Sonor citizen API", version="1", urls_namespace="citizen_api", auth=citizen_auth,
    docs_url="/docs",
)
install_error_handlers(citizen_api)
citizen_api.add_router("", "identity.api.router")
citizen_api.add_router("qr/", "identity.qr_api.router")
citizen_api.add_router("", "notify.api.router")
citizen_api.add_router("", "notify.preferences_api.router")
citizen_api.add_router("", "chatserver.http.chat_api.router")
