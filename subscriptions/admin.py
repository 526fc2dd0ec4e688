"""The console's view of subscriptions: each one's subscriber, channel, status and last error, and
every delivery with its attempts; dead letters can be retried from here.

Read-only: a Subscription is changed through the FHIR API (so that its checks, versions, audit and
notifications apply); the receiver's header values are never shown.
"""

from __future__ import annotations

from django.contrib import admin, messages

from adminui.readonly import ReadOnly

from . import worker
from .models import Attempt, Delivery, SubscriptionState


@admin.register(SubscriptionState)
class SubscriptionAdmin(ReadOnly, admin.ModelAdmin):
    list_display = (
        "fhir_id",
        "criteria",
        "channel_type",
        "endpoint",
        "status",
        "subscriber",
        "events_since_start",
        "updated",
    )
    list_filter = ("status", "channel_type")
    search_fields = ("fhir_id", "criteria", "endpoint", "subscriber_identity", "credential_ref")
    exclude = ("headers",)
    readonly_fields = ("header_names",)

    @admin.display(description="channel headers")
    def header_names(self, obj: SubscriptionState) -> str:
        return ", ".join(line.split(":", 1)[0] for line in obj.headers) or "-"


class AttemptInline(admin.TabularInline):
    model = Attempt
    extra = 0
    can_delete = False
    readonly_fields = ("at", "ok", "status_code", "latency_ms", "error")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(ReadOnly, admin.ModelAdmin):
    list_display = (
        "pk",
        "subscription",
        "number",
        "action",
        "resource_type",
        "fhir_id",
        "state",
        "attempts",
        "next_attempt",
        "last_error",
    )
    list_filter = ("state", "subscription__channel_type")
    search_fields = ("subscription__fhir_id", "fhir_id", "key")
    inlines = [AttemptInline]
    actions = ["retry"]

    @admin.action(description="Retry the selected dead letters")
    def retry(self, request, queryset) -> None:
        count = worker.retry_dead(list(queryset.filter(state=Delivery.DEAD).values_list("pk", flat=True)))
        self.message_user(request, f"{count} dead deliveries queued again", messages.SUCCESS)

    def has_change_permission(self, request, obj=None) -> bool:
        # The retry action needs change permission on the list; the form itself stays read-only.
        return obj is None and request.user.is_superuser
