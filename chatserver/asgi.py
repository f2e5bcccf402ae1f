"""ASGI entry point: HTTP to Django (the agency API's notification POST first to
chatserver/http/agency_post.py), /ws/v1 to the device socket, /ws/v1/login to QR login."""

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatserver.settings")

import django  # noqa: E402

django.setup(set_prefix=False)  # before the consumers and the handler import models

from chatserver.core.http_handler import HttpHandler  # noqa: E402

django_application = HttpHandler()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from chatserver.http import agency_post  # noqa: E402
from chatserver.sockets.routing import websocket_urlpatterns  # noqa: E402
from chatserver.worker.embedded import EmbeddedWorker  # noqa: E402


async def http_application(scope: dict, receive: Any, send: Any) -> None:
    """Django, but for the agency API's notification POST in its common case."""
    if agency_post.handles(scope):
        await agency_post.serve(scope, receive, send, django_application)
    else:
        await django_application(scope, receive, send)


application = ProtocolTypeRouter({
    "http": http_application,
    "websocket": URLRouter(websocket_urlpatterns),
})
if settings.SONOR_EMBEDDED_WORKER:
    application = EmbeddedWorker(application)
