"""Django's middleware, made to run its hooks in the event loop under ASGI.

Django's MiddlewareMixin runs every process_request, process_view and process_response of an
async request through sync_to_async, in a thread that Django's ASGI handler starts for each
request and joins at its end, both on the event loop. Profiled at a few hundred agency POSTs a
second, starting and joining those threads was the largest cost on the loop, and it blocked
every socket meanwhile. These hooks only read and write headers, cookies and lazy objects, so
they run inline; a session or messages store that has something to save still gets its thread.
"""

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware

from chatserver.core.client_address import UntrustedProxyHeadersMiddleware


class InlineHooks:
    """Runs the hooks of the middleware it is mixed into inline on the event loop."""

    # Middleware for browsers (sessions, CSRF, users, messages) is skipped on paths that
    # only take an API key (SONOR_KEY_ONLY_PATHS): such requests carry no cookie to read.
    browser_only = False

    def response_needs_thread(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        """Whether process_response may touch the database for this request."""
        return False

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        if self.browser_only and request.path_info.startswith(settings.SONOR_KEY_ONLY_PATHS):
            return await self.get_response(request)  # type: ignore[attr-defined, no-any-return]
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)  # type: ignore[attr-defined]
        if hasattr(self, "process_response"):
            if self.response_needs_thread(request, response):
                response = await sync_to_async(self.process_response, thread_sensitive=True)(
                    request, response)
            else:
                response = self.process_response(request, response)
        return response


class InlineUntrustedProxyHeadersMiddleware(InlineHooks, UntrustedProxyHeadersMiddleware):
    pass


class InlineSecurityMiddleware(InlineHooks, SecurityMiddleware):
    pass


class InlineSessionMiddleware(InlineHooks, SessionMiddleware):
    browser_only = True

    def response_needs_thread(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        session = getattr(request, "session", None)
        return session is not None and (session.modified or settings.SESSION_SAVE_EVERY_REQUEST)


class InlineCommonMiddleware(InlineHooks, CommonMiddleware):
    pass


class InlineCsrfViewMiddleware(InlineHooks, CsrfViewMiddleware):
    browser_only = True

    async def process_view(self, request, callback, callback_args, callback_kwargs):  # type: ignore[no-untyped-def, override]
        # A coroutine, so that Django's async handler calls it without a thread.
        return super().process_view(request, callback, callback_args, callback_kwargs)


class InlineAuthenticationMiddleware(InlineHooks, AuthenticationMiddleware):
    browser_only = True


class InlineMessageMiddleware(InlineHooks, MessageMiddleware):
    browser_only = True

    def response_needs_thread(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        messages = getattr(request, "_messages", None)
        return messages is not None and (messages.used or messages.added_new)


class InlineXFrameOptionsMiddleware(InlineHooks, XFrameOptionsMiddleware):
    pass
