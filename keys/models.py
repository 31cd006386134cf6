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
        return self.quota_id or self.get_kind_display()


class KeyUsageDay(models.Model):
    """Requests per key per quota day, kept for the keys page's chart."""

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="usage_days")
    day = models.DateField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "day"], name="one_usage_row_per_key_day")]
        ordering = ["day"]

    def __str__(self) -> str:
        return f"{self.key_id} {self.day}: {self.count}"
