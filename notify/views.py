"""Plain pages reached from emails."""

from django.http import HttpRequest, HttpResponse

from chatserver.core.errors import NotFound
from notify.preferences import email_verify


def email_verify_view(request: HttpRequest, token: str) -> HttpResponse:
    """The link in the confirmation email; GET is enough (it only confirms ownership)."""
    try:
        email_verify(token=token)
    except NotFound as exc:
        return HttpResponse(exc.message, status=404, content_type="text/plain; charset=utf-8")
    return HttpResponse("Имэйл хаяг баталгаажлаа. / Email address confirmed.",
                        content_type="text/plain; charset=utf-8")
