from __future__ import annotations

import uuid
from decimal import Decimal
from functools import cached_property

from django.conf import settings
from django.db import models
from django.db.models import Sum
from django.utils import timezone

from keys.models import UsageRecord


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["user", "-updated_at"])]

    def __str__(self) -> str:
        return self.title or str(self.id)


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        PENDING = "pending"
        COMPLETED = "completed"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    text = models.TextField(blank=True)
    # Gemini 3 wants the signature of its own text part back in later turns.
    thought_signature = models.TextField(blank=True)
    model = models.CharField(max_length=80, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.COMPLETED)
    error = models.TextField(blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    total_tokens = models.PositiveIntegerField(null=True, blank=True)
    # Google Search grounding: the sources Gemini cited ([{"title", "uri"}]) and the queries it ran.
    grounding = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.role}: {self.text[:60]}"


class Batch(models.Model):
    """A Gemini batch job: waiting batch-priced jobs of one model, packed onto one AI Studio key.

    Its name at Google is stored as soon as Google gives it, before anything waits on it. Its display
    name at Google is this row's id, so a batch whose submitter died before storing the name is found
    again by listing the key's batches, not sent twice (pipeline.batches)."""

    class State(models.TextChoices):
        SUBMITTING = "submitting"  # its jobs are packed; it is being sent to Google
        SUBMITTED = "submitted"  # Google has it: pending or running there
        COLLECTED = "collected"  # its results are stored; its jobs finished
        ENDED = "ended"  # Google failed, expired or cancelled it: its jobs failed, or went online

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    model = models.CharField(max_length=80)
    key = models.ForeignKey("keys.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="batches")
    name = models.CharField(max_length=120, blank=True, help_text="Google's name for it: batches/...")
    state = models.CharField(max_length=12, choices=State.choices, default=State.SUBMITTING)
    google_state = models.CharField(max_length=40, blank=True, help_text="BATCH_STATE_..., as last seen.")
    error = models.TextField(blank=True)
    items = models.PositiveIntegerField(default=0, help_text="Requests in it: one per image of its jobs.")
    tokens = models.PositiveBigIntegerField(default=0, help_text="Its input tokens, estimated: its batch quota use.")
    polls = models.PositiveIntegerField(default=0)
    # When a process may next work on it (submit, poll, collect); a process working on it pushes this
    # ahead first, so no two do at once.
    next_look_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    submitted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "batches"
        indexes = [models.Index(fields=["state", "next_look_at"], name="batches_due")]

    def __str__(self) -> str:
        return f"{self.model} batch {self.name or self.id} ({self.state})"


class Job(models.Model):
    """One generation request from any door, with one internal state machine.

    Doors map `state`/`phase` to their own vocabularies.
    """

    class State(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Phase(models.TextChoices):
        QUEUED = "queued"
        INITIALIZING = "initializing"
        WAITING = "waiting"  # every key rests for this model, and the first rest ends soon
        GENERATING = "generating"
        BATCHED = "batched"  # in a Gemini batch, at the Batch API's price
        SAVING = "saving"
        DONE = "done"

    class ErrorCode(models.TextChoices):
        """Why a job failed; the label is what the chat shows, http_status what a synchronous door answers."""

        NO_USABLE_KEY = "no_usable_key", "No Gemini key can take this prompt"
        BLOCKED = "blocked", "Gemini refused this prompt"
        IMAGE_SAFETY = "image_safety", "Gemini withheld the image for safety"
        NO_IMAGE = "no_image", "No image in Gemini's answer"
        REQUEST_REJECTED = "request_rejected", "Gemini rejected the request"
        UPSTREAM_ERROR = "upstream_error", "Gemini is unavailable"
        LOCATION_REFUSED = "location_refused", "Google refuses this server's location"
        FILE_MISSING = "file_missing", "An image file is missing from the store"
        STORE_UNAVAILABLE = "store_unavailable", "The image store is out of reach"
        CANCELLED = "cancelled", "Cancelled"
        BATCH_ENDED = "batch_ended", "Gemini's Batch API did not finish this"
        INTERNAL = "internal", "Generation failed"

        @property
        def http_status(self) -> int:
            return _FAILURE_STATUS[self]

    class Priority(models.IntegerChoices):
        """The order in which waiting jobs are claimed, before fairness between users."""

        INTERACTIVE = 0, "a person is watching (the chat)"
        BACKGROUND = 1, "background work (the APIs, agents)"
        BATCH = 2, "work that can wait for the Batch API's price"

    FINISHED = (State.SUCCEEDED, State.FAILED, State.CANCELLED)
    # Gemini refused the prompt itself: sending it again would be refused again.
    REFUSED = (ErrorCode.BLOCKED, ErrorCode.IMAGE_SAFETY)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="jobs")
    user_message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="job")
    assistant_message = models.OneToOneField(
        Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="answer_to"
    )
    source = models.CharField(max_length=20, default="api", help_text="The door the request came through.")
    model = models.CharField(max_length=80)
    aspect_ratio = models.CharField(max_length=10, blank=True)
    resolution = models.CharField(max_length=10, blank=True)
    num_images = models.PositiveSmallIntegerField(default=1)
    thinking_level = models.CharField(max_length=10, blank=True)
    grounding = models.BooleanField(default=False, help_text="Google Search grounding was asked for.")
    # Door-specific details (output format and size, the original request...).
    options = models.JSONField(default=dict, blank=True)
    callback_url = models.URLField(max_length=2048, blank=True)
    # A client's Idempotency-Key: a retried POST within IDEMPOTENCY_HOURS gets this job, not a new one.
    idempotency_key = models.CharField(max_length=200, blank=True)
    request_hash = models.CharField(
        max_length=64, blank=True, help_text="What the request asked, to spot a reused key."
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.BACKGROUND)
    phase = models.CharField(max_length=12, choices=Phase.choices, default=Phase.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    error_code = models.CharField(max_length=40, blank=True, choices=ErrorCode.choices)
    error = models.TextField(blank=True)
    # Gemini's own word when it answered without an image: {"blockReason" or "finishReason": ..., "message": ...}.
    refusal = models.JSONField(null=True, blank=True)
    retry_after = models.DateTimeField(null=True, blank=True)
    batch = models.ForeignKey(Batch, on_delete=models.SET_NULL, null=True, blank=True, related_name="jobs")
    attempts = models.PositiveSmallIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["state", "created_at"]),
            # The queue's order (pipeline.queue), and a user's jobs in it (the per-user limit).
            models.Index(fields=["state", "priority", "created_at"], name="queue_order"),
            models.Index(fields=["user", "state"], name="jobs_of_a_user"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "idempotency_key"], condition=~models.Q(idempotency_key=""), name="one_job_per_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.source} job {self.id} ({self.state})"

    @property
    def finished(self) -> bool:
        return self.state in self.FINISHED

    @property
    def failure_status(self) -> int:
        """The HTTP status a synchronous door answers a failed job with."""
        return Job.ErrorCode(self.error_code).http_status if self.error_code else 500

    @property
    def prompt(self) -> str:
        return self.user_message.text

    @cached_property
    def batch_saving(self) -> Decimal:
        """What the batch price saved on this job's calls, as the ledger has it (0 for online jobs)."""
        if self.priority != Job.Priority.BATCH:
            return Decimal(0)
        rows = UsageRecord.objects.filter(job_id=str(self.pk))
        return rows.aggregate(saved=Sum("saved"))["saved"] or Decimal(0)

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


_FAILURE_STATUS = {
    Job.ErrorCode.NO_USABLE_KEY: 503,
    Job.ErrorCode.BLOCKED: 422,
    Job.ErrorCode.IMAGE_SAFETY: 422,
    Job.ErrorCode.NO_IMAGE: 422,
    Job.ErrorCode.REQUEST_REJECTED: 400,
    Job.ErrorCode.UPSTREAM_ERROR: 502,
    Job.ErrorCode.LOCATION_REFUSED: 503,
    Job.ErrorCode.FILE_MISSING: 404,
    Job.ErrorCode.STORE_UNAVAILABLE: 503,
    Job.ErrorCode.CANCELLED: 409,
    Job.ErrorCode.BATCH_ENDED: 502,
    Job.ErrorCode.INTERNAL: 500,
}


class QueueLimit(models.Model):
    """A user's own limit of jobs waiting or running at once (else NANOCLONE_MAX_JOBS_PER_USER)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="queue_limit")
    jobs = models.PositiveIntegerField(help_text="Jobs this user may have waiting or running at once.")

    def __str__(self) -> str:
        return f"{self.user}: {self.jobs} jobs at once"


class WebhookDelivery(models.Model):
    """One notification to one URL (the global webhook or a caller's callback), with its attempts."""

    class State(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    url = models.URLField(max_length=2048)
    event = models.CharField(max_length=40, help_text="e.g. job.progress, job.completed, job.failed.")
    payload = models.JSONField()
    job = models.ForeignKey(Job, on_delete=models.SET_NULL, null=True, blank=True, related_name="webhook_deliveries")
    # Fernet-encrypted (keys.crypto), like API keys: the task signs with it later, by id.
    secret = models.TextField(blank=True, editable=False)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    # Claimed by one delivery task at a time; a redelivered task after a crash waits for it to expire.
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["state", "created_at"])]

    def __str__(self) -> str:
        return f"{self.event} to {self.url} ({self.state})"


class WebhookAttempt(models.Model):
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveSmallIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="one_attempt_per_number")]

    def __str__(self) -> str:
        return f"attempt {self.number}: {self.status_code or self.error}"
