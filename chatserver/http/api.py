"""The citizen API /api/v1: one NinjaAPI, authentication, and the AppError mapper.

Routers live in each package's api.py; views there parse, call one service, shape the answer.
"""

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError
from ninja.errors import ValidationError as NinjaValidationError

from chatserver.core.errors import AppError, OriginForbidden, Unauthenticated
from identity.models import DeviceSession
from identity.services import session_authenticate
from identity.ws_auth import bearer_from_header, origin_allowed

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


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
    if "retry_after" in exc.extra:
        response["Retry-After"] = str(max(1, int(exc.extra["retry_after"] + 0.999)))
    return response


def install_error_handlers(api: NinjaAPI) -> None:
    api.add_exception_handler(AppError, lambda r, e: error_response(api, r, e))

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


citizen_api = NinjaAPI(
    title="Sonor citizen API", version="1", urls_namespace="citizen_api", auth=citizen_auth,
    docs_url="/docs",
)
install_error_handlers(citizen_api)
citizen_api.add_router("", "identity.api.router")
citizen_api.add_router("qr/", "identity.qr_api.router")
citizen_api.add_router("", "notify.api.router")
citizen_api.add_router("", "notify.preferences_api.router")
citizen_api.add_router("", "chatserver.http.chat_api.router")
