from django.urls import path

from chatserver.sockets.consumers import DeviceConsumer
from chatserver.sockets.login_consumer import LoginConsumer

websocket_urlpatterns = [
    path("ws/v1", DeviceConsumer.as_asgi()),
    path("ws/v1/login", LoginConsumer.as_asgi()),
]
