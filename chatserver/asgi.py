"""ASGI entry point: HTTP to Django, /ws/v1 to the device socket, /ws/v1/login to QR login."""

import os
import sys

sys.setswitchinterval(float(os.environ.get("X_SWITCH", "0.005")))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatserver.settings")

import django  # noqa: E402

django.setup(set_prefix=False)  # before the consumers and the handler import models

from chatserver.core.http_handler import HttpHandler  # noqa: E402

django_application = HttpHandler()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from chatserver.sockets.routing import websocket_urlpatterns  # noqa: E402
from chatserver.worker.embedded import EmbeddedWorker  # noqa: E402

application = ProtocolTypeRouter({
    "http": django_application,
    "websocket": URLRouter(websocket_urlpatterns),
})
if settings.SONOR_EMBEDDED_WORKER:
    application = EmbeddedWorker(application)
