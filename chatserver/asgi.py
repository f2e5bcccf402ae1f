"""ASGI entry point: HTTP to Django, /ws/v1 to the device socket, /ws/v1/login to QR login."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatserver.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_application = get_asgi_application()  # sets Django up before the consumers import

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
