"""The web pages of DAN login: /dan/login sends the browser to DAN, /dan/callback brings it
back signed in (identity/login/dan.py holds the flow).

The state and the PKCE verifier ride in a signed, HttpOnly cookie that only this browser has
(SameSite=Lax: DAN's redirect back is a top-level GET from another site, which a Strict cookie
would miss); the server keeps the state hashed for single use. A failure renders the error
page in Mongolian and English, clears that cookie and changes nothing else.
"""

from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_GET

from chatserver.core.errors import AppError
from chatserver.core.throttle import throttle_check
from chatserver.core.web import page, session_cookie_set
from identity.login import dan
from identity.services import phone_current

BINDING_COOKIE = "sonor_dan"
BINDING_PATH = "/dan/"
BINDING_SALT = "sonor.dan.login"
# Login starts per client address and minute: each one holds a state until it expires.
STARTS_PER_MINUTE = 30

_MESSAGES_MN = {
    "rate_limited": "Хэт олон оролдлого. Түр хүлээгээд дахин оролдоно уу.",
}


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"  # the code and state are in these URLs
    return response


def _error_page(request: HttpRequest, error: AppError) -> HttpResponse:
    message_mn = getattr(error, "message_mn", None) or _MESSAGES_MN.get(
        error.code, "ДАН-аар нэвтэрч чадсангүй.")
    response = page(request, "error.html", {
        "error": error, "message_mn": message_mn,
        "heading_mn": "ДАН-аар нэвтэрч чадсангүй", "heading_en": "DAN login failed",
    }, status=error.status)
    response.delete_cookie(BINDING_COOKIE, path=BINDING_PATH, samesite="Lax")
    return response


def _client_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


@require_GET
def dan_login(request: HttpRequest) -> HttpResponse:
    """The "Log in with DAN" link: remember a new state in this browser, go to DAN."""
    try:
        config = dan.dan_config_required()
        throttle_check(key=f"dan-login:{_client_ip(request)}", limit=STARTS_PER_MINUTE,
                       window_seconds=60)
        redirect_url = config.redirect_url or request.build_absolute_uri(reverse("dan_callback"))
        start = dan.dan_login_begin(redirect_url=redirect_url)
    except AppError as exc:
        return _error_page(request, exc)
    binding = signing.dumps({"state": start.state, "verifier": start.code_verifier,
                             "redirect_url": redirect_url}, salt=BINDING_SALT)
    response = _no_store(HttpResponseRedirect(start.authorize_url))
    response.set_cookie(BINDING_COOKIE, binding, max_age=config.state_ttl, path=BINDING_PATH,
                        httponly=True, secure=settings.SECURE_COOKIES, samesite="Lax")
    return response


@require_GET
def dan_callback(request: HttpRequest) -> HttpResponse:
    """DAN's redirect back: check the state, fetch the citizen, set the session cookie."""
    try:
        config = dan.dan_config_required()
        try:
            binding = signing.loads(request.COOKIES.get(BINDING_COOKIE, ""), salt=BINDING_SALT,
                                    max_age=config.state_ttl)
        except signing.BadSignature:  # missing, forged or expired (SignatureExpired)
            binding = {}
        dan.dan_state_consume(returned=request.GET.get("state", ""),
                              expected=str(binding.get("state", "")))
        if request.GET.get("error"):
            if request.GET["error"] == "access_denied":
                raise dan.DanConsentDenied()
            raise dan.DanUnavailable(f"DAN answered with an error: {request.GET['error'][:64]}")
        citizen = dan.dan_citizen_fetch(code=request.GET.get("code", ""),
                                        code_verifier=str(binding.get("verifier", "")),
                                        redirect_url=str(binding.get("redirect_url", "")))
        login = dan.dan_login_complete(citizen=citizen, ip=_client_ip(request),
                                       device=request.headers.get("User-Agent", ""))
    except AppError as exc:
        return _error_page(request, exc)
    # A citizen without a verified phone lands on the phone form: chat needs one (terms 14.2).
    has_phone = phone_current(user=login.user) is not None
    response = _no_store(HttpResponseRedirect("/" if has_phone else "/#phone"))
    response.delete_cookie(BINDING_COOKIE, path=BINDING_PATH, samesite="Lax")
    session_cookie_set(response, login.token)
    return response
