"""Staff tools: suspension goes through the services so sockets close and the log says who."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from identity import accounts, services
from identity.models import AccessLogEntry, DeviceSession, PhoneNumber, User


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    list_display = ("register_number", "name", "status", "created_at")
    list_filter = ("status", "is_staff")
    search_fields = ("register_number", "name", "phones__e164")
    readonly_fields = ("register_number", "status", "status_changed_at", "created_at",
                       "last_login", "password")
    exclude = ("groups", "user_permissions")
    actions = ("suspend", "unsuspend")

    @admin.action(description="Suspend (sessions end, data kept)")
    def suspend(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            accounts.user_suspend(user=user, by=request.user)  # type: ignore[arg-type]
            services.access_log_record(subject=user, actor_kind="staff",
                                       actor_name=str(request.user), action="suspended")
        messages.success(request, f"{queryset.count()} suspended.")

    @admin.action(description="Lift suspension")
    def unsuspend(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset.filter(status=User.Status.SUSPENDED):
            accounts.user_unsuspend(user=user, by=request.user)  # type: ignore[arg-type]
            services.access_log_record(subject=user, actor_kind="staff",
                                       actor_name=str(request.user),
                                       action="suspension lifted")
        messages.success(request, "Suspension lifted.")


@admin.register(PhoneNumber)
class PhoneNumberAdmin(admin.ModelAdmin):
    list_display = ("e164", "user", "verified_at", "released_at", "release_reason")
    search_fields = ("e164", "user__register_number")
    readonly_fields = [f.name for f in PhoneNumber._meta.fields]


@admin.register(DeviceSession)
class DeviceSessionAdmin(admin.ModelAdmin):
    list_display = ("user", "device_name", "login_method", "ip", "created_at", "revoked_at")
    exclude = ("token_hash",)
    readonly_fields = ("user", "device_name", "platform", "login_method", "ip", "created_at",
                       "last_seen_at", "revoked_at", "revoke_reason")


@admin.register(AccessLogEntry)
class AccessLogEntryAdmin(admin.ModelAdmin):
    list_display = ("subject", "actor_kind", "actor_name", "action", "created_at")
    readonly_fields = ("subject", "actor_kind", "actor_name", "action", "created_at")
