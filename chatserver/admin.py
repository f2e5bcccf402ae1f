"""Staff queue of chat reports: the copy of the reported text stays even if it was deleted."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from chatserver.chat.models import Report
from chatserver.chat.moderation import report_handle


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    list_display = ("created_at", "reporter", "reported_user", "room", "reason", "handled_at")
    list_filter = (("handled_at", admin.EmptyFieldListFilter),)
    search_fields = ("reason", "text")
    readonly_fields = ("reporter", "reported_user", "event", "room", "text", "reason",
                       "created_at", "handled_at", "handled_by")
    actions = ("mark_handled",)

    @admin.action(description="Mark handled")
    def mark_handled(self, request: HttpRequest, queryset: QuerySet[Report]) -> None:
        for report in queryset.filter(handled_at__isnull=True):
            report_handle(report=report, staff=request.user,  # type: ignore[arg-type]
                          resolution="handled")
        messages.success(request, "Marked handled.")
