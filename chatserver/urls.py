from django.contrib import admin
from django.urls import path, re_path
from django.views.i18n import set_language

from chatserver.core.metrics import metrics_view
from chatserver.http.agency_api import agency_api
from chatserver.http.api import api_path_not_found, citizen_api, json_error_urls
from chatserver.http.health import healthz, readyz
from chatserver.http.pages import (
    admin_login,
    demo_login,
    dev_outbox,
    index,
    javascript_catalog,
    login_page,
    static_file,
)
from identity.dan_views import dan_callback, dan_login
from notify.unsubscribe import email_unsubscribe
from notify.views import email_verify_view

urlpatterns = [
    path("admin/login/", admin_login),  # throttled; before the admin's own route
    path("admin/", admin.site.urls),
    path("api/v1/", json_error_urls(citizen_api)),
    path("api/agency/v1/", json_error_urls(agency_api)),
    re_path(r"^api/(?:v1|agency/v1)(?:/(?P<path>[\s\S]*))?$", api_path_not_found),
    path("email/verify/<str:token>", email_verify_view, name="email_verify"),
    path("healthz", healthz),
    path("readyz", readyz),
    path("metrics", metrics_view),
    path("", index, name="index"),
    path("login", login_page, name="login"),
    path("dan/login", dan_login, name="dan_login"),
    path("dan/callback", dan_callback, name="dan_callback"),
    path("demo/login/<str:token>", demo_login, name="demo_login"),
    path("demo/outbox", dev_outbox, name="dev_outbox"),
    path("static/<path:path>", static_file, name="static"),
    path("jsi18n/", javascript_catalog, name="javascript_catalog"),
    path("i18n/setlang/", set_language, name="set_language"),
    path("email/unsubscribe/<str:token>", email_unsubscribe, name="email_unsubscribe"),
]
