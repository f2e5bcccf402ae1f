"""The web client's pages (same origin as the API and sockets) and the demo pages.

The pages are static shells; the modules in frontend/static/sonor/ do the work through
/api/v1 and the sockets. The session token lives only in an HttpOnly cookie that no script
can read.
"""

import hashlib
import logging

from django.conf import settings
from django.contrib import admin
from django.contrib.staticfiles.views import serve as staticfiles_serve
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.utils import translation
from django.views.i18n import JavaScriptCatalog

from chatserver.core.client_address import client_address
from chatserver.core.errors import AppError, RateLimited, Unauthenticated
from chatserver.core.throttle import throttle_check
from chatserver.core.web import page, page_language, session_cookie_set
from identity.login.base import login_methods
from identity.login.demo import demo_login_consume
from identity.services import session_create
from notify.models import DevOutboxMessage

log = logging.getLogger(__name__)

OUTBOX_PAGE_SIZE = 100

_catalog = JavaScriptCatalog.as_view()


def javascript_catalog(request: HttpRequest) -> HttpResponseBase:
    """The web client's strings (djangojs catalog) in the page's language."""
    with translation.override(page_language(request)):
        response = _catalog(request)
    response["Cache-Control"] = "no-cache"
    response["Vary"] = "Cookie"
    return response


def _demo_required() -> None:
    if not settings.SONOR_DEMO:
        raise Http404()


def index(request: HttpRequest) -> HttpResponse:
    return page(request, "app.html")


def login_page(request: HttpRequest) -> HttpResponse:
    return page(request, "login.html",
                 {"login_methods": [method.name for method in login_methods()]})


def demo_login(request: HttpRequest, token: str) -> HttpResponse:
    """A one-time demo login link: a new session in the cookie, then the app."""
    _demo_required()
    try:
        user = demo_login_consume(token=token)
        _, session_token = session_create(
            user=user, login_method="demo",
            device_name=request.headers.get("User-Agent", ""),
            ip=client_address(request),
        )
    except Unauthenticated as exc:  # unknown or used link
        return page(request, "error.html", {"error": exc}, status=400)
    except AppError as exc:  # e.g. a suspended or closed account
        return page(request, "error.html", {"error": exc}, status=exc.status)
    response = HttpResponseRedirect("/")
    response["Referrer-Policy"] = "no-referrer"  # the token is in this URL
    response["Cache-Control"] = "no-store"
    session_cookie_set(response, session_token)
    return response


def dev_outbox(request: HttpRequest) -> HttpResponse:
    """What the demo senders 'sent' (SMS codes, pushes, emails), newest first."""
    _demo_required()
    messages = DevOutboxMessage.objects.order_by("-created_at", "-pk")[:OUTBOX_PAGE_SIZE]
    return page(request, "outbox.html", {"messages": messages})


ADMIN_LOGIN_WINDOW_SECONDS = 15 * 60


def admin_login(request: HttpRequest, extra_context: dict[str, object] | None = None
                ) -> HttpResponse:
    """The staff login, throttled per client address and per user name (shared counters, so
    across every server): SONOR_ADMIN_LOGIN_ATTEMPTS tries in 15 minutes, then 429."""
    if request.method == "POST":
        username = request.POST.get("username", "").strip().upper()
        try:
            for key in (f"admin-login-ip:{client_address(request)}",
                        "admin-login-user:" + hashlib.sha256(username.encode()).hexdigest()):
                throttle_check(key=key, limit=settings.SONOR_ADMIN_LOGIN_ATTEMPTS,
                               window_seconds=ADMIN_LOGIN_WINDOW_SECONDS)
        except RateLimited as exc:
            log.warning("admin login throttled for %s", client_address(request))
            response = HttpResponse("Too many login attempts; try again later.", status=429,
                                    content_type="text/plain; charset=utf-8")
            response["Retry-After"] = exc.retry_after_header() or "1"
            return response
    return admin.site.login(request, extra_context)


def static_file(request: HttpRequest, path: str) -> HttpResponseBase:
    """Static files (frontend/static and the admin's), served by the app itself so that one
    process is the whole server; a reverse proxy may serve `collectstatic`'s STATIC_ROOT
    instead. `insecure` only means "also when DEBUG is off"; lookups stay inside the
    static directories."""
    response = staticfiles_serve(request, path, insecure=True)
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "no-cache"  # revalidate: Last-Modified gives 304s
    return response
