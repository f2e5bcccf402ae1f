"""One-click email unsubscribe (RFC 8058), without login.

    email header  List-Unsubscribe: <{SONOR_PUBLIC_URL}/email/unsubscribe/<token>>
                  List-Unsubscribe-Post: List-Unsubscribe=One-Click
    mail client   POST  .../<token>  body "List-Unsubscribe=One-Click"  -> opt-out recorded, 200
    browser       GET   .../<token>  -> a confirmation page whose button makes that POST

A GET never unsubscribes: mail scanners and link previews fetch every URL in a message.
The token is signed (salted for this use only) and carries the user id and the category; it
does not expire, as unsubscribe links in old messages must keep working (RFC 8058 section 3.2).

The opt-out is an ordinary preference change (email off for that category), recorded with
its source.
"""

import logging
from typing import Any

from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from identity.models import User
from notify.models import Notification
from notify.preferences import preference_set

logger = logging.getLogger(__name__)

_SALT = "sonor.notify.email-unsubscribe"
ONE_CLICK_VALUE = "One-Click"  # RFC 8058: the POST body is List-Unsubscribe=One-Click

CATEGORY_LABELS: dict[str, tuple[str, str]] = {  # category -> (Mongolian, English)
    "service_request": ("Үйлчилгээний хүсэлт", "Service requests"),
    "petition": ("Өргөдөл", "Petitions"),
    "complaint": ("Гомдол", "Complaints"),
    "payment": ("Төлбөр", "Payments"),
    "system": ("Системийн мэдээлэл", "System notices"),
    "security": ("Аюулгүй байдал", "Security"),
    "chat": ("Чат", "Chat"),
}


class UnsubscribeTokenInvalid(Exception):
    pass


def unsubscribe_token_make(*, user_id: int, category: str) -> str:
    return signing.Signer(salt=_SALT).sign_object({"u": user_id, "c": category})


def unsubscribe_token_read(*, token: str) -> tuple[int, str]:
    """(user_id, category) of a token; raises UnsubscribeTokenInvalid if it was not ours."""
    try:
        payload = signing.Signer(salt=_SALT).unsign_object(token)
    except (signing.BadSignature, ValueError) as exc:
        raise UnsubscribeTokenInvalid(str(exc)) from exc
    if not isinstance(payload, dict):
        raise UnsubscribeTokenInvalid("payload is not an object")
    user_id, category = payload.get("u"), payload.get("c")
    if not isinstance(user_id, int) or category not in Notification.Category.values:
        raise UnsubscribeTokenInvalid("payload has no user id or a known category")
    return user_id, category


def unsubscribe_url(*, user_id: int, category: str) -> str:
    """The absolute one-click URL for List-Unsubscribe (built on SONOR_PUBLIC_URL)."""
    token = unsubscribe_token_make(user_id=user_id, category=category)
    return settings.SONOR_PUBLIC_URL.rstrip("/") + reverse("email_unsubscribe", args=[token])


def email_opt_out(*, user_id: int, category: str) -> None:
    """Turn off email for this user and category."""
    user = User.objects.filter(pk=user_id).first()
    if user is None:
        return  # no account, nothing will be sent
    preference_set(user=user, category=category, channel="email", enabled=False,
                   source="email_unsubscribe")


@csrf_exempt  # mail clients post without a CSRF token; the signed token is the authority
@require_http_methods(["GET", "HEAD", "POST"])
def email_unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    try:
        user_id, category = unsubscribe_token_read(token=token)
    except UnsubscribeTokenInvalid:
        return render(request, "notify/unsubscribe.html", {"state": "invalid"}, status=400)
    labels = CATEGORY_LABELS.get(category, (category, category))
    context: dict[str, Any] = {"label_mn": labels[0], "label_en": labels[1]}
    if request.method != "POST":
        response = render(request, "notify/unsubscribe.html", {**context, "state": "confirm"})
        response["X-Robots-Tag"] = "noindex"
        return response
    if request.POST.get("List-Unsubscribe") != ONE_CLICK_VALUE:
        return render(request, "notify/unsubscribe.html", {**context, "state": "bad_request"},
                      status=400)
    email_opt_out(user_id=user_id, category=category)
    logger.info("email opt-out: user %s, category %s", user_id, category)
    return render(request, "notify/unsubscribe.html", {**context, "state": "done"})
