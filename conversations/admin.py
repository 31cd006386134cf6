from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from conversations import pipeline
from conversations.models import Batch, Conversation, Job, Message, QueueLimit, WebhookAttempt, WebhookDelivery


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = ("number", "status_code", "error", "duration_ms", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: WebhookDelivery | None = None) -> bool:
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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ("created_at", "role", "status", "text", "error", "total_tokens")
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Conversation | None = None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("title", "user", "message_count", "created_at", "updated_at")
    list_filter = ("created_at", "updated_at")
    search_fields = ("title", "user__username", "id")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    date_hierarchy = "updated_at"
    inlines = [MessageInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        return super().get_queryset(request).annotate(messages_total=Count("messages"))

    @admin.display(description="messages", ordering="messages_total")
    def message_count(self, conversation: Conversation) -> int:
        return conversation.messages_total  # type: ignore[attr-defined]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("created_at", "role", "status", "short_text", "model", "total_tokens", "conversation")
    list_filter = ("role", "status", "model")
    search_fields = ("text", "error", "conversation__title", "conversation__id")
    list_select_related = ("conversation",)
    raw_id_fields = ("conversation",)
    exclude = ("thought_signature",)
    date_hierarchy = "created_at"

    @admin.display(description="text")
    def short_text(self, message: Message) -> str:
        return (message.text or message.error)[:80]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "prompt",
        "source",
        "state",
        "phase",
        "progress",
        "model",
        "user",
        "error_code",
        "duration",
    )
    list_filter = ("state", "priority", "source", "phase", "error_code", "model")
    search_fields = ("id", "user__username", "user_message__text", "error")
    list_select_related = ("user", "user_message")
    raw_id_fields = ("user", "conversation", "user_message", "assistant_message", "batch")
    readonly_fields = ("created_at", "updated_at", "started_at", "finished_at", "attempts", "lease_until")
    date_hierarchy = "created_at"
    actions = ["cancel_pending", "run_again"]

    @admin.display(description="prompt")
    def prompt(self, job: Job) -> str:
        return job.user_message.text[:80]

    @admin.display(description="duration")
    def duration(self, job: Job) -> str:
        seconds = job.duration_seconds
        return f"{seconds:.1f} s" if seconds is not None else "—"

    @admin.action(description="Cancel selected jobs that have not started")
    def cancel_pending(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        cancelled = sum(pipeline.cancel(job) for job in queryset)
        self.message_user(request, f"Cancelled {cancelled} pending job(s).", messages.SUCCESS)

    @admin.action(description="Queue selected pending jobs on the cluster again")
    def run_again(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        pending = list(queryset.filter(state=Job.State.PENDING))
        for job in pending:
            pipeline.enqueue(job)
        self.message_user(request, f"Queued {len(pending)} pending job(s); finished jobs are left as they are.")


@admin.register(QueueLimit)
class QueueLimitAdmin(admin.ModelAdmin):
    """A user's own limit of jobs waiting or running at once (else NANOCLONE_MAX_JOBS_PER_USER)."""

    list_display = ("user", "jobs")
    search_fields = ("user__username",)
    raw_id_fields = ("user",)


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    """Gemini batches of batch-priced jobs (pipeline.batches): what Google holds, read only."""

    list_display = ("created_at", "model", "state", "google_state", "items", "tokens", "key", "name", "finished_at")
    list_filter = ("state", "model")
    search_fields = ("id", "name")
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Batch | None = None) -> bool:
        return False
