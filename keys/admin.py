from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from keys import checks, credentials, usage
from keys.models import ApiKey, Budget, KeyRest, Price, QuotaLimit, UsageRecord, quota_day


class ApiKeyAddForm(forms.ModelForm):
    """Adding a credential takes its secret once; it is stored encrypted and never shown again."""

    kind = forms.ChoiceField(choices=ApiKey.Kind.choices, required=False, initial=ApiKey.Kind.AI_STUDIO)
    secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="The API key (AI Studio's AIza…, or a Vertex AI express-mode key).",
    )
    service_account = forms.FileField(required=False, help_text="A Vertex AI service account's JSON key file.")
    proxy = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="http://, https:// or socks5:// URL, with user:password@ if the proxy asks for them.",
    )
    base_url = forms.URLField(
        required=False, assume_scheme="https", help_text=ApiKey._meta.get_field("base_url").help_text
    )

    class Meta:
        model = ApiKey
        fields = (
            "kind",
            "secret",
            "service_account",
            "location",
            "proxy",
            "label",
            "project",
            "base_url",
            "daily_limit",
            "free_tier",
            "enabled",
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind") or ApiKey.Kind.AI_STUDIO
        uploaded = data.get("service_account")
        secret = uploaded.read(20_001).decode(errors="replace") if uploaded else data.get("secret", "")
        fields = {
            name: data[name]
            for name in ("label", "project", "base_url", "daily_limit", "free_tier", "enabled", "location")
            if name in data
        }
        try:
            self.credential = ApiKey.new(secret or "", kind, data.get("proxy", ""), **fields)
        except credentials.CredentialError as error:
            raise forms.ValidationError(str(error)) from error
        return data

    def save(self, commit: bool = True) -> ApiKey:
        self.instance = self.credential
        return super().save(commit)


class RestInline(admin.TabularInline):
    """The models resting on this key (rests of its whole project are listed under KeyRest)."""

    model = KeyRest
    extra = 0
    fields = ("model", "kind", "quota_id", "until", "detail")
    readonly_fields = fields
    can_delete = True  # deleting a rest is the operator's "try this model again now"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(KeyRest)
class KeyRestAdmin(admin.ModelAdmin):
    list_display = ("model", "key", "project", "kind", "quota_id", "until")
    list_filter = ("model", "kind", "project")
    readonly_fields = ("key", "project", "model", "kind", "quota_id", "until", "detail", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(QuotaLimit)
class QuotaLimitAdmin(admin.ModelAdmin):
    """Pacing's limits: learned from Google's 429s (read-only) and the operator's, which win."""

    list_display = ("__str__", "project", "key", "model", "period", "learned", "operator", "source", "learned_at")
    list_filter = ("period", "model", "project")
    fields = ("key", "project", "model", "period", "operator", "learned", "quota_id", "learned_at")
    readonly_fields = ("learned", "quota_id", "learned_at")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = (
        "masked",
        "label",
        "kind",
        "project",
        "location",
        "proxy_shown",
        "status_badge",
        "today",
        "total_count",
        "last_used_at",
        "short_error",
    )
    list_filter = (
        "kind",
        "enabled",
        "invalid",
        "unreachable",
        "free_tier",
        "project",
        ("exhausted_until", admin.EmptyFieldListFilter),
    )
    search_fields = ("label", "masked", "project", "invalid_reason", "last_error")
    readonly_fields = (
        "masked",
        "kind",
        "location",
        "proxy_shown",
        "status_badge",
        "today",
        "total_count",
        "last_used_at",
        "exhausted_until",
        "exhausted_detail",
        "invalid_reason",
        "last_error",
        "last_error_at",
        "created_at",
    )
    fields = (
        "masked",
        "kind",
        "location",
        "proxy_shown",
        "label",
        "project",
        "base_url",
        "daily_limit",
        "free_tier",
        "enabled",
        "invalid",
        *readonly_fields[4:],
    )
    inlines = [RestInline]
    actions = ["enable", "disable", "reset_counters", "retest"]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = ApiKeyAddForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ApiKeyAddForm.Meta.fields if obj is None else self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else self.readonly_fields

    def get_inlines(self, request: HttpRequest, obj: Any) -> Any:
        return self.inlines if obj is not None else []

    @admin.display(description="status")
    def status_badge(self, key: ApiKey) -> str:
        colour = {"active": "#12805c", "disabled": "#6b6b76", "invalid": "#d92d20"}.get(key.status, "#a15c00")
        return format_html('<strong style="color: {}">{}</strong>', colour, key.status_text)

    @admin.display(description="today / limit")
    def today(self, key: ApiKey) -> str:
        return f"{key.used_today} / {key.daily_limit}"

    @admin.display(description="last error")
    def short_error(self, key: ApiKey) -> str:
        return key.last_error[:80]

    @admin.action(description="Enable selected keys (and clear an invalid verdict)")
    def enable(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = queryset.update(enabled=True, invalid=False, invalid_reason="", consecutive_failures=0)
        self.message_user(request, f"Enabled {count} key(s).", messages.SUCCESS)

    @admin.action(description="Disable selected keys")
    def disable(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = queryset.update(enabled=False)
        self.message_user(request, f"Disabled {count} key(s).", messages.SUCCESS)

    @admin.action(description="Reset today's counters and cooldowns")
    def reset_counters(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = queryset.update(
            count_today=0, count_day=quota_day(), exhausted_until=None, exhausted_detail="", consecutive_failures=0
        )
        self.message_user(request, f"Reset the counters of {count} key(s) at {timezone.now():%H:%M} UTC.")

    @admin.action(description="Re-test selected keys against Gemini")
    def retest(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset:
            result = checks.retest(key)
            self.message_user(request, result.message, messages.SUCCESS if result.ok else messages.ERROR)


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    """The usage ledger, read-only, with today's and the last 30 days' usage and cost above the list."""

    change_list_template = "admin/keys/usagerecord/change_list.html"
    list_display = ("created_at", "model", "resolution", "outcome", "quota_id", "key_label", "door", "images", "cost")
    list_filter = ("outcome", "model", "door", "project", "day")
    search_fields = ("key_label", "job_id", "quota_id", "detail")
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        extra = {**(extra_context or {}), "usage_panels": usage.panels(), "prices_url": "../price/"}
        return super().changelist_view(request, extra)


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    """What a call is estimated to cost; an edit applies to the next calls (past ones keep their cost)."""

    list_display = (
        "model",
        "resolution",
        "tier",
        "per_image",
        "input_per_million",
        "text_output_per_million",
        "source",
    )
    list_editable = ("per_image", "input_per_million", "text_output_per_million")
    list_filter = ("model", "tier")


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ("user", "images_per_day", "cost_per_day")
    search_fields = ("user__username",)
    autocomplete_fields = ("user",)
