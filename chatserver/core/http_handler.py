"""Django's ASGI handler, without a new thread per request for views that are async.

Django runs each ASGI request in a ThreadSensitiveContext: the request's sync steps (its
signals' receivers, response.close, any sync view) get a thread started for that request
and joined at its end, on the event loop. For an async view that is all overhead: profiled
under a few hundred agency POSTs a second it was the loop's largest cost. Requests to async
views use the process's one sync thread for those few steps instead; sync views keep
Django's thread per request, so that a slow one does not hold up the others.
"""

from typing import Any

from asgiref.sync import iscoroutinefunction
from django.core.handlers.asgi import ASGIHandler
from django.urls import Resolver404, resolve


class HttpHandler(ASGIHandler):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and _view_is_async(scope["path"]):
            await self.handle(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def _view_is_async(path: str) -> bool:
    try:
        return iscoroutinefunction(resolve(path).func)
    except Resolver404:
        return False
