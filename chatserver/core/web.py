"""What every web page and the web client's session share: page headers (CSP) and the
HttpOnly session cookie."""

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import translation

# Everything from our own origin: no inline script, no third-party fetches. The sockets'
# ws(s):// origin is named too, for browsers where 'self' does not cover it. The QR is shown
# as a data: image (an SVG in an <img> runs no script and loads nothing).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws://{host} wss://{host}; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def session_cookie_set(response: HttpResponse, token: str) -> None:
    """Put a session token in the web client's cookie: HttpOnly (no script reads it),
    SameSite=Strict (no cross-site request carries it), Secure behind TLS."""
    response.set_cookie(
        settings.SONOR_SESSION_COOKIE, token,
        max_age=int(settings.SONOR_SESSION_MAX_DAYS * 86400),
        httponly=True, secure=settings.SECURE_COOKIES, samesite="Strict",
    )


def page_language(request: HttpRequest) -> str:
    """Mongolian unless the citizen switched (the cookie Django's set_language view sets);
    the browser's Accept-Language is not consulted."""
    code = request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME, "")
    return code if code in dict(settings.LANGUAGES) else settings.LANGUAGE_CODE


def page(request: HttpRequest, template: str, context: dict[str, object] | None = None,
         status: int = 200) -> HttpResponse:
    """A page of ours, in the citizen's language, with the headers every page carries."""
    with translation.override(page_language(request)):
        response = render(request, template, {"demo": settings.SONOR_DEMO, **(context or {})},
                          status=status)
    response["Content-Language"] = page_language(request)
    # get_host() is checked against ALLOWED_HOSTS.
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.format(host=request.get_host())
    # same-origin, not no-referrer: under no-referrer a form POST (the language switch) carries
    # `Origin: null`, which Django's CSRF check refuses. Other sites still get no referrer.
    response["Referrer-Policy"] = "same-origin"
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "no-store"
    return response
