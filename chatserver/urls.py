from django.contrib import admin
from django.urls import path

from chatserver.api import citizen_api
from chatserver.metrics import metrics_view
from chatserver.views import healthz, readyz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", citizen_api.urls),
    path("healthz", healthz),
    path("readyz", readyz),
    path("metrics", metrics_view),
]
