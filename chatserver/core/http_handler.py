"""Django's ASGI handler, without thread hops for views that are async.

Django runs each ASGI request in a ThreadSensitiveContext: the request's sync steps (the
request_started and request_finished receivers, response.close, any sync view) get a thread
started for that request and joined at its end, on the event loop, and the view runs in a
task of its own beside a second task that listens for a disconnect. For an async view that is
all overhead: profiled under a few hundred agency POSTs a second, these hops were the loop's
largest cost. Requests to async views run on the loop from start to end: the signals'
receivers (closing this thread's database connections and caches, which the loop thread
never opens) run inline, and the view is awaited directly. Sync views keep Django's thread per
request, so that a slow one does not hold up the others.
"""

import functools
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import HttpRequest
from django.urls import Resolver404, ResolverMatch, get_resolver, set_script_prefix


class HttpHandler(ASGIHandler):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and _view_is_async(scope["path"]):
            await self._handle_on_loop(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    def resolve_request(self, request: HttpRequest) -> ResolverMatch:
        """Django's, with each path's match remembered (the routes do not change at run time;
        matching walked every pattern of every API on each request)."""
        if hasattr(request, "urlconf"):
            return super().resolve_request(request)  # type: ignore[no-any-return]
        request.resolver_match = _resolve(settings.ROOT_URLCONF, request.path_info)
        return request.resolver_match

    async def _handle_on_loop(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """ASGIHandler.handle for an async view, with no thread and no extra task. A client
        that disconnects meanwhile does not cancel the view: its work (a batch) completes."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            set_script_prefix(get_script_prefix(scope))
            signals.request_started.send(sender=self.__class__, scope=scope)
            request, error_response = self.create_request(scope, body_file)
            if request is None:  # a body that is not valid, or too large
                assert error_response is not None
                response = error_response
            else:
                response = await self.run_get_response(request)
            await self.send_response(response, send)
            response.close()  # sends request_finished
        finally:
            body_file.close()


@functools.lru_cache(maxsize=4096)  # bounded: any path may come in; a 404 is not kept
def _resolve(urlconf: str, path: str) -> ResolverMatch:
    return get_resolver(urlconf).resolve(path)


def _view_is_async(path: str) -> bool:
    try:
        return iscoroutinefunction(_resolve(settings.ROOT_URLCONF, path).func)
    except Resolver404:
        return False
