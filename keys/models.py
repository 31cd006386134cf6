from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from keys import credentials, crypto


def quota_day(at: dt.datetime | None = None) -> dt.date:
    """Gemini's quota day: it turns over at midnight Pacific time, not UTC."""
    from zoneinfo import ZoneInfo

    return (at or timezone.now()).astimezone(ZoneInfo(settings.QUOTA_TIMEZONE)).date()


def scope_of(key_id: int | None, project: str) -> dict[str, Any]:
    """The rows a rest or a limit belongs to: the key's project when it names one (its keys share
    Gemini's quotas), else the key alone."""
    return {"project": project} if project else {"key_id": key_id}


def default_daily_limit() -> int:
    return settings.KEY_DAILY_LIMIT


class ApiKey(models.Model):
    """A Google credential of the pool (the model keeps its first name, "key"): an AI Studio API key,
    a Vertex AI express-mode API key, or a Vertex AI service account."""

    class Kind(models.TextChoices):
        AI_STUDIO = "ai_studio", "AI Studio API key"
        VERTEX_EXPRESS = "vertex_express", "Vertex AI express-mode API key"
        VERTEX_SERVICE_ACCOUNT = "vertex_service_account", "Vertex AI service account"

    class Status(models.TextChoices):
        ACTIVE = "active"
        EXHAUSTED = "exhausted"
        LIMIT_REACHED = "limit_reached"
        INVALID = "invalid"
        DISABLED = "disabled"
        UNREACHABLE = "unreachable"

    label = models.CharField(max_length=100, blank=True)
    kind = models.CharField(max_length=24, choices=Kind.choices, default=Kind.AI_STUDIO)
    # An API key, or a service account's whole JSON key.
    secret_encrypted = models.TextField(editable=False)
    # A masked API key, or a service account's email.
    masked = models.CharField(max_length=120, editable=False)
    fingerprint = models.CharField(max_length=64, unique=True, editable=False)
    base_url = models.URLField(blank=True, help_text="Leave empty to use NANOCLONE_GEMINI_BASE_URL.")
    project = models.CharField(
        max_length=100,
        blank=True,
        help_text="The Google Cloud project the key belongs to: keys of one project share its quotas.",
    )
    location = models.CharField(
        max_length=40, blank=True, help_text="A service account's Vertex AI location: global, us-central1..."
    )
    # The proxy URL its calls go through, password and all; proxy_shown is the same without the password.
    proxy_encrypted = models.TextField(blank=True, editable=False)
    proxy_shown = models.CharField(max_length=300, blank=True, editable=False)
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
    def create(cls, secret: str, kind: str = Kind.AI_STUDIO, proxy: str = "", **fields: Any) -> ApiKey:
        """Add a credential of `kind` from what the operator pasted (raises credentials.CredentialError)."""
        key = cls.new(secret, kind, proxy, **fields)
        key.save(force_insert=True)
        return key

    @classmethod
    def new(cls, secret: str, kind: str = Kind.AI_STUDIO, proxy: str = "", **fields: Any) -> ApiKey:
        """An unsaved credential of `kind`, checked (raises credentials.CredentialError). A service
        account's project comes from its JSON key; its location is global unless given."""
        secret = secret.strip()
        if kind == cls.Kind.VERTEX_SERVICE_ACCOUNT:
            account = credentials.service_account(secret)
            fields["project"] = account.project
            fields["location"] = fields.get("location") or "global"
            shown, fingerprint = account.email, crypto.fingerprint(account.identity)
        else:
            if any(ch.isspace() for ch in secret):
                raise credentials.CredentialError("An API key has no spaces.")
            if not (secret.isascii() and secret.isprintable()):  # it travels in an HTTP header
                raise credentials.CredentialError("An API key is printable ASCII (letters, digits, - and _).")
            fields["location"] = ""
            shown, fingerprint = crypto.mask(secret), crypto.fingerprint(secret)
        if cls.objects.filter(fingerprint=fingerprint).exists():
            raise credentials.CredentialError("This credential is already in the pool.")
        return cls(
            kind=kind,
            secret_encrypted=crypto.encrypt(secret),
            masked=shown,
            fingerprint=fingerprint,
            **fields,
            **cls.proxy_fields(proxy),
        )

    @staticmethod
    def proxy_fields(url: str) -> dict[str, str]:
        """The stored form of a proxy URL (raises credentials.CredentialError); empty: none."""
        proxy = credentials.proxy(url)
        return (
            {"proxy_encrypted": crypto.encrypt(proxy.url), "proxy_shown": proxy.shown}
            if proxy
            else {
                "proxy_encrypted": "",
                "proxy_shown": "",
            }
        )

    @property
    def secret(self) -> str:
        return crypto.decrypt(self.secret_encrypted)

    @property
    def proxy(self) -> str:
        return crypto.decrypt(self.proxy_encrypted) if self.proxy_encrypted else ""

    @property
    def is_vertex(self) -> bool:
        return self.kind != self.Kind.AI_STUDIO

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
        CAPACITY = "capacity", "Vertex AI's shared capacity busy"
        PACED = "paced", "its quota window is full (pacing)"

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


class QuotaLimit(models.Model):
    """What a project (or a key that names none) may spend of a model's quota in a window: requests
    per minute or per day, or input tokens per minute. Learned from a 429's quotaValue and quotaId,
    set by an operator, or both: the operator's wins. keys.pacing admits calls within it."""

    class Period(models.TextChoices):
        MINUTE = "minute", "requests per minute"
        DAY = "day", "requests per day"
        TOKENS = "tokens", "input tokens per minute"
        BATCH_TOKENS = "batch_tokens", "input tokens enqueued in batches"

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, null=True, blank=True, related_name="limits")
    project = models.CharField(max_length=100, blank=True, help_text="A project's limit is shared by its keys.")
    model = models.CharField(max_length=80, blank=True, help_text="Blank: each model (an operator's limit).")
    period = models.CharField(max_length=12, choices=Period.choices)
    learned = models.PositiveIntegerField(null=True, blank=True, editable=False)
    quota_id = models.CharField(max_length=120, blank=True, editable=False)
    learned_at = models.DateTimeField(null=True, blank=True, editable=False)
    operator = models.PositiveIntegerField(
        null=True, blank=True, help_text="The operator's limit; it wins over what was learned. Blank: none."
    )

    class Meta:
        ordering = ["project", "key", "model", "period"]
        constraints = [
            models.UniqueConstraint(
                fields=["key", "model", "period"], condition=models.Q(key__isnull=False), name="one_limit_per_key"
            ),
            models.UniqueConstraint(
                fields=["project", "model", "period"], condition=~models.Q(project=""), name="one_limit_per_project"
            ),
            models.CheckConstraint(
                condition=models.Q(key__isnull=True, project__gt="") | models.Q(key__isnull=False, project=""),
                name="limit_of_a_key_or_a_project",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.limit} {self.get_period_display()} for {self.model or 'each model'} on {self.scope_label}"

    @property
    def limit(self) -> int | None:
        return self.operator if self.operator is not None else self.learned

    @property
    def source(self) -> str:
        if self.operator is not None:
            return "set by an operator"
        return f"learned from Google's 429 ({self.quota_id})" if self.quota_id else "learned from Google's 429"

    @property
    def scope_label(self) -> str:
        return f"project {self.project}" if self.project else f"key {self.key_id}"


class QuotaWindow(models.Model):
    """The calls admitted (and, where a learned limit is being re-checked, accepted) in one window of
    one limit: the count every process and host shares, taken with one conditional UPDATE."""

    scope = models.CharField(max_length=120)  # "project:<id>" or "key:<pk>"
    model = models.CharField(max_length=80)
    period = models.CharField(max_length=12, choices=QuotaLimit.Period.choices)
    start_ms = models.BigIntegerField()  # the window's start, Unix milliseconds
    used = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "model", "period", "start_ms"], name="one_window"),
        ]

    def __str__(self) -> str:
        return f"{self.used} {self.period} calls of {self.model} on {self.scope} from {self.start_ms}"


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
    kind = models.CharField(max_length=24, choices=ApiKey.Kind.choices, default=ApiKey.Kind.AI_STUDIO)
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
    tier = models.CharField(max_length=10, default="standard", help_text="The price tier billed: standard or batch.")
    saved = models.DecimalField(
        max_digits=12, decimal_places=6, default=0, help_text="What the standard tier would have cost more, in USD."
    )

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

    class Platform(models.TextChoices):
        GEMINI_API = "", "Gemini API (AI Studio), and Vertex AI where it has no price of its own"
        VERTEX = "vertex", "Vertex AI"

    model = models.CharField(max_length=80)
    resolution = models.CharField(max_length=10, help_text="512, 1K, 2K or 4K.")
    tier = models.CharField(max_length=10, choices=Tier.choices, default=Tier.STANDARD)
    platform = models.CharField(max_length=10, choices=Platform.choices, default=Platform.GEMINI_API, blank=True)
    per_image = models.DecimalField(max_digits=10, decimal_places=6, help_text="USD per output image.")
    input_per_million = models.DecimalField(
        max_digits=10, decimal_places=4, default=0, help_text="USD per million input tokens (prompt and references)."
    )
    text_output_per_million = models.DecimalField(
        max_digits=10, decimal_places=4, default=0, help_text="USD per million thinking tokens."
    )
    source = models.CharField(max_length=200, blank=True, help_text="Where the figure comes from, and its date.")

    class Meta:
        ordering = ["model", "platform", "tier", "resolution"]
        constraints = [
            models.UniqueConstraint(fields=["model", "resolution", "tier", "platform"], name="one_price_per_model_size")
        ]

    def __str__(self) -> str:
        where = f" on {self.get_platform_display()}" if self.platform else ""
        return f"{self.model} {self.resolution} {self.tier}{where}: ${self.per_image}"


class Budget(models.Model):
    """A user's daily limits (per quota day); empty fields mean no limit."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="budget")
    images_per_day = models.PositiveIntegerField(null=True, blank=True)
    cost_per_day = models.DecimalField(
        max_digits=10, decimal_places=4, null=True, blank=True, help_text="Estimated USD per quota day."
    )

    def __str__(self) -> str:
        return f"budget of {self.user}"
