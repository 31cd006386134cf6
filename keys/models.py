from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import models
from django.utils import timezone

from keys import crypto


def quota_day(at: dt.datetime | None = None) -> dt.date:
    """Gemini's quota day: it turns over at midnight Pacific time, not UTC."""
    from zoneinfo import ZoneInfo

    return (at or timezone.now()).astimezone(ZoneInfo(settings.QUOTA_TIMEZONE)).date()


def default_daily_limit() -> int:
    return settings.KEY_DAILY_LIMIT


class ApiKey(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        EXHAUSTED = "exhausted"
        LIMIT_REACHED = "limit_reached"
        INVALID = "invalid"
        DISABLED = "disabled"
        UNREACHABLE = "unreachable"

    label = models.CharField(max_length=100, blank=True)
    secret_encrypted = models.TextField(editable=False)
    masked = models.CharField(max_length=32, editable=False)
    fingerprint = models.CharField(max_length=64, unique=True, editable=False)
    base_url = models.URLField(blank=True, help_text="Leave empty to use NANOCLONE_GEMINI_BASE_URL.")
    project = models.CharField(
        max_length=100,
        blank=True,
        help_text="The Google Cloud project the key belongs to: keys of one project share its quotas.",
    )
    daily_limit = models.PositiveIntegerField(default=default_daily_limit)
    free_tier = models.BooleanField(
        default=False, help_text="A free-tier project: Google bills nothing, so its calls cost 0 in the usage figures."
    )
    enabled = models.BooleanField(default=True)
    invalid = models.BooleanField(default=False)
    invalid_reason = models.CharField(max_length=300, blank=True)
    count_day = models.DateField(null=True, blank=True, help_text="Quota day that count_today belongs to.")
    count_today = models.PositiveIntegerField(default=0)
    total_count = models.PositiveBigIntegerField(default=0)
    exhausted_until = models.DateTimeField(null=True, blank=True)
    exhausted_detail = models.CharField(max_length=300, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    # Its last call or test could not connect (DNS, refused, TLS); a successful one clears it.
    unreachable = models.BooleanField(default=False)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.label or 'key'} ({self.masked})"

    @classmethod
    def create(cls, secret: str, **fields: object) -> ApiKey:
        secret = secret.strip()
        return cls.objects.create(
            secret_encrypted=crypto.encrypt(secret),
            masked=crypto.mask(secret),
            fingerprint=crypto.fingerprint(secret),
            **fields,
        )

    @property
    def secret(self) -> str:
        return crypto.decrypt(self.secret_encrypted)

    @property
    def used_today(self) -> int:
        """Today's count; a counter stamped with an earlier day counts as zero."""
        return self.count_today if self.count_day == quota_day() else 0

    @property
    def status(self) -> str:
        if not self.enabled:
            return self.Status.DISABLED
        if self.invalid:
            return self.Status.INVALID
        if self.unreachable:
            return self.Status.UNREACHABLE
        if self.exhausted_until and self.exhausted_until > timezone.now():
            return self.Status.EXHAUSTED
        if self.used_today >= self.daily_limit:
            return self.Status.LIMIT_REACHED
        return self.Status.ACTIVE

    @property
    def status_text(self) -> str:
        status = self.status
        if status == self.Status.EXHAUSTED and self.exhausted_until:
            return f"exhausted until {self.exhausted_until:%Y-%m-%d %H:%M} UTC"
        if status == self.Status.INVALID:
            return f"invalid: {self.invalid_reason}"
        if status == self.Status.UNREACHABLE:
            return f"unreachable: {self.last_error[:200]}"
        if status == self.Status.LIMIT_REACHED:
            return "daily limit reached"
        return str(status)


class KeyRest(models.Model):
    """A model resting on one key, or on every key of a project, until `until`: that quota is spent.

    Gemini's quotas are per project and per model, by the minute and by the day, so a 429 rests
    only what it says is spent; the key goes on serving other models.
    """

    class Kind(models.TextChoices):
        MINUTE = "minute", "per-minute quota"
        DAY = "day", "per-day quota"
        UNKNOWN = "unknown", "429 without details"
        NO_QUOTA = "no_quota", "no quota for this model: limit 0"
        RETIRED = "retired", "no longer available to this project"

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, null=True, blank=True, related_name="rests")
    project = models.CharField(max_length=100, blank=True)
    model = models.CharField(max_length=80)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    quota_id = models.CharField(max_length=120, blank=True)
    until = models.DateTimeField()
    detail = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["until"]
        constraints = [
            models.UniqueConstraint(
                fields=["key", "model"], condition=models.Q(key__isnull=False), name="one_rest_per_key_model"
            ),
            models.UniqueConstraint(
                fields=["project", "model"], condition=~models.Q(project=""), name="one_rest_per_project_model"
            ),
        ]
        indexes = [models.Index(fields=["model", "until"])]

    def __str__(self) -> str:
        return f"{self.model} resting on {self.project or self.key_id} until {self.until:%Y-%m-%d %H:%M}"

    @property
    def why(self) -> str:
        if self.kind in (self.Kind.NO_QUOTA, self.Kind.RETIRED):
            return self.get_kind_display()
        return self.quota_id or self.get_kind_display()


class ModelNotice(models.Model):
    """What Gemini said of a model that the catalogue (code) doesn't say yet: "no longer available
    to new users". The catalogue keeps its own entry until a release changes it; operators see this."""

    model = models.CharField(max_length=80, unique=True)
    notice = models.CharField(max_length=500)
    seen_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.model}: {self.notice}"


class UsageRecord(models.Model):
    """The ledger: one row per upstream Gemini call (each retry and failover is a call of its own).

    Written with one INSERT by keys.pool.report(), the one place that sees every call's outcome.
    User, door and job are plain values (this floor knows nothing of conversations); the key is
    kept as an id and its label too, so the figures survive a deleted key.
    """

    class Outcome(models.TextChoices):
        IMAGE = "image"  # Gemini answered with an image
        REFUSED = "refused"  # Gemini answered without one: blocked, image safety, text only
        EXHAUSTED = "429"  # RESOURCE_EXHAUSTED; quota_id says which quota
        REJECTED = "rejected"  # the key (400 API_KEY_INVALID, 401, 403), the request, the model or the location refused
        FAILED = "failed"  # 5xx, timeout, connection error
        UNREADABLE = "unreadable"  # a 200 that can't be read: not JSON, a cut-off or damaged image

    created_at = models.DateTimeField(default=timezone.now)
    day = models.DateField(help_text="The quota day (Pacific time) the call was made on.")
    key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="usage")
    key_label = models.CharField(max_length=140, blank=True)
    project = models.CharField(max_length=100, blank=True)
    model = models.CharField(max_length=80)
    resolution = models.CharField(max_length=10, blank=True)
    user_id = models.IntegerField(null=True, blank=True, db_index=True)
    door = models.CharField(max_length=20, blank=True, help_text="The door the request came through (Job.source).")
    job_id = models.CharField(max_length=36, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    quota_id = models.CharField(max_length=120, blank=True)
    detail = models.CharField(max_length=300, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    thinking_tokens = models.PositiveIntegerField(null=True, blank=True)
    images = models.PositiveSmallIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    cost = models.DecimalField(max_digits=12, decimal_places=6, default=0, help_text="Estimated, in USD.")

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "usage record"
        indexes = [
            models.Index(fields=["day", "key"]),
            models.Index(fields=["user_id", "day"], name="usage_user_day"),
            models.Index(fields=["created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.model} {self.outcome}"


class Price(models.Model):
    """What Google bills for one model, resolution and tier, in USD (admin-editable; defaults in a migration)."""

    class Tier(models.TextChoices):
        STANDARD = "standard"
        BATCH = "batch"
        FLEX = "flex"

    model = models.CharField(max_length=80)
    resolution = models.CharField(max_length=10, help_text="512, 1K, 2K or 4K.")
    tier = models.CharField(max_length=10, choices=Tier.choices, default=Tier.STANDARD)
    per_image = models.DecimalField(max_digits=10, decimal_places=6, help_text="USD per output image.")
    input_per_million = models.DecimalField(
        max_digits=10, decimal_places=4, default=0, help_text="USD per million input tokens (prompt and references)."
    )
    text_output_per_million = models.DecimalField(
        max_digits=10, decimal_places=4, default=0, help_text="USD per million thinking tokens."
    )
    source = models.CharField(max_length=200, blank=True, help_text="Where the figure comes from, and its date.")

    class Meta:
        ordering = ["model", "tier", "resolution"]
        constraints = [models.UniqueConstraint(fields=["model", "resolution", "tier"], name="one_price_per_model_size")]

    def __str__(self) -> str:
        return f"{self.model} {self.resolution} {self.tier}: ${self.per_image}"


class Budget(models.Model):
    """A user's daily limits (per quota day); empty fields mean no limit."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="budget")
    images_per_day = models.PositiveIntegerField(null=True, blank=True)
    cost_per_day = models.DecimalField(
        max_digits=10, decimal_places=4, null=True, blank=True, help_text="Estimated USD per quota day."
    )

    def __str__(self) -> str:
        return f"budget of {self.user}"
