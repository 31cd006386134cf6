from __future__ import annotations

from django.contrib import admin

from conversations.models import WebhookAttempt, WebhookDelivery


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = ("number", "status_code", "error", "duration_ms", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("created_at", "event", "url", "state", "attempt_count", "delivered_at", "job")
    list_filter = ("state", "event")
    search_fields = ("url", "event")
    # Never the secret: it is stored encrypted and excluded (editable=False).
    readonly_fields = ("url", "event", "payload", "job", "state", "created_at", "delivered_at")
    inlines = [WebhookAttemptInline]

    @admin.display(description="attempts")
    def attempt_count(self, delivery: WebhookDelivery) -> int:
        return delivery.attempts.count()

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False
