"""Prometheus metrics of this process, served at /metrics."""

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest

from chatserver.core.client_address import client_address

SOCKETS_OPEN = Gauge("sonor_sockets_open", "Open authenticated device sockets")
FRAMES_IN = Counter("sonor_frames_in_total", "Client frames received", ["type"])
FRAMES_OUT = Counter("sonor_frames_out_total", "Frames sent to clients")
FRAME_ERRORS = Counter("sonor_frame_errors_total", "Client frames answered with error", ["code"])
SOCKETS_REFUSED = Counter("sonor_sockets_refused_total", "Sockets closed at connect", ["reason"])


def metrics_view(request: HttpRequest) -> HttpResponse:
    # Scraped from inside the deployment only: not for the public.
    if client_address(request) not in settings.SONOR_METRICS_FROM:
        raise Http404()
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
