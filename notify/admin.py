"""Staff tools: agencies and their API keys (shown once, rotated, revoked), notifications
(staff reads go to the citizen's access log; misaddressed reports are listed) and broadcasts.

A new key is shown on a page of its own, never put in a message cookie.
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import escape

from notify import agency_services, inbox
from notify.models import (
    AGENCY_CATEGORIES,
    Agency,
    AgencyApiKey,
    Broadcast,
    Delivery,
    Notification,
    agency_default_categories,
)


def _key_page(request: HttpRequest, agency: Agency, keys: list[str]) -> HttpResponse:
    items = "".join(f"<li><code>{escape(k)}</code></li>" for k in keys)
    return HttpResponse(
        f"<!doctype html><title>API key</title><h1>{escape(agency.name)}: new API key</h1>"
        f"<p>Copy it now: it is shown only this once and stored only as a hash.</p>"
        f"<ul>{items}</ul><p><a href='../'>Back</a></p>",
        headers={"Cache-Control": "no-store"},
    )


class AgencyApiKeyInline(admin.TabularInline):
    model = AgencyApiKey
    extra = 0
    can_delete = False
    fields = ("prefix", "created_at", "expires_at", "revoked_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AgencyForm(forms.ModelForm):
    """Scopes as staff set them: the categories the agency's keys may send (security is for
    the citizen's own login and number notices: grant it only on purpose)."""

    categories = forms.MultipleChoiceField(
        choices=[(c, c) for c in AGENCY_CATEGORIES], widget=forms.CheckboxSelectMultiple,
        required=False, initial=agency_default_categories)

    class Meta:
        model = Agency
        fields = ("name", "categories", "broadcast_all", "sms_daily_budget_parts")
        labels = {"broadcast_all": "May broadcast to every citizen (else lists only)"}


@admin.register(Agency)
class AgencyAdmin(admin.ModelAdmin):
    form = AgencyForm
    list_display = ("name", "categories", "broadcast_all", "created_at")
    search_fields = ("name",)
    inlines = (AgencyApiKeyInline,)
    actions = ("issue_key",)

    def save_model(self, request: HttpRequest, obj: Agency, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            request._sonor_new_key = agency_services.api_key_issue(agency=obj)  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: Agency, post_url_continue: Any = None
                     ) -> HttpResponse:
        key = getattr(request, "_sonor_new_key", None)
        if key:
            return _key_page(request, obj, [key])
        return super().response_add(request, obj, post_url_continue)

    @admin.action(description="Issue an additional API key")
    def issue_key(self, request: HttpRequest, queryset: QuerySet[Agency]) -> HttpResponse | None:
        if queryset.count() != 1:
            messages.error(request, "Choose one agency.")
            return None
        agency = queryset.get()
        return _key_page(request, agency, [agency_services.api_key_issue(agency=agency)])


@admin.register(AgencyApiKey)
class AgencyApiKeyAdmin(admin.ModelAdmin):
    list_display = ("__str__", "agency", "created_at", "expires_at", "revoked_at")
    list_filter = ("agency",)
    fields = ("agency", "prefix", "created_at", "expires_at", "revoked_at")
    readonly_fields = fields
    actions = ("rotate", "revoke")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # keys are issued from the agency, so that they are shown once

    @admin.action(description="Rotate (new key; the old one works for the grace period)")
    def rotate(self, request: HttpRequest, queryset: QuerySet[AgencyApiKey]
               ) -> HttpResponse | None:
        if queryset.count() != 1:
            messages.error(request, "Rotate one key at a time.")
            return None
        api_key = queryset.get()
        return _key_page(request, api_key.agency, [agency_services.api_key_rotate(api_key=api_key)])

    @admin.action(description="Revoke now")
    def revoke(self, request: HttpRequest, queryset: QuerySet[AgencyApiKey]) -> None:
        for api_key in queryset:
            agency_services.api_key_revoke(api_key=api_key)
        messages.success(request, f"{queryset.count()} key(s) revoked.")


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    """Opening a notification is a read of the citizen's data: it is access-logged."""

    list_display = ("id", "agency", "category", "title", "created_at", "reported_at")
    list_filter = ("category", ("reported_at", admin.EmptyFieldListFilter), "agency")
    search_fields = ("reference",)
    list_select_related = ("agency",)
    readonly_fields = [f.name for f in Notification._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        notification = self.get_object(request, object_id)
        if notification is not None and request.method == "GET":
            inbox.staff_notification_read(staff_name=str(request.user),
                                             notification=notification)
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(Broadcast)
class BroadcastAdmin(admin.ModelAdmin):
    list_display = ("id", "agency", "category", "title", "status", "done", "total", "starts_at")
    list_filter = ("status", "category", "agency")
    exclude = ("register_numbers",)
    readonly_fields = [f.name for f in Broadcast._meta.fields if f.name != "register_numbers"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    """Dead letters (status failed) and everything else the pipeline did, for staff."""

    list_display = ("id", "notification_id", "channel", "status", "attempts", "last_error",
                    "next_attempt_at", "sent_at")
    list_filter = ("status", "channel")
    # The citizen's number, email or push token; and a chat push's title and text, which are
    # a private conversation (notices keep theirs on the notification, access-logged).
    exclude = ("address", "title", "body")
    readonly_fields = ("notification", "channel", "device", "dedupe_key", "status",
                       "escalation", "next_attempt_at", "expires_at", "lease_until",
                       "leased_by", "attempts", "provider_id", "parts", "last_error",
                       "created_at", "sent_at", "finished_at")
    actions = ("retry_now",)

    @admin.action(description="Retry now (failed deliveries still within validity)")
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        from django.utils import timezone

        now = timezone.now()
        count = queryset.filter(status=Delivery.Status.FAILED, expires_at__gt=now).update(
            status=Delivery.Status.PENDING, next_attempt_at=now, attempts=0, finished_at=None)
        messages.success(request, f"{count} deliveries queued again.")
