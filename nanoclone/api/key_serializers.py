from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.db import IntegrityError, transaction
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from keys.models import ApiKey, KeyRest
from nanoclone.api.envelope import StrictCharField


class KeyRestSerializer(serializers.Serializer):
    """A model resting on a key, or on every key of its project: why, and until when."""

    model = serializers.CharField()
    on = serializers.SerializerMethodField(help_text="key, or project when the key's project shares the quota.")
    kind = serializers.CharField(help_text="minute, day, or unknown (a 429 without details).")
    why = serializers.CharField(help_text="Google's quota id, e.g. GenerateRequestsPerDayPerProjectPerModel-FreeTier.")
    until = serializers.DateTimeField()

    def get_on(self, rest: KeyRest) -> str:
        return "project" if rest.project else "key"


class ApiKeySerializer(serializers.ModelSerializer):
    """A key as the API shows it: masked, never the secret."""

    key = serializers.CharField(source="masked", read_only=True)
    dailyLimit = serializers.IntegerField(source="daily_limit", read_only=True)
    baseUrl = serializers.CharField(source="base_url", read_only=True)
    status = serializers.CharField(read_only=True)
    statusText = serializers.CharField(source="status_text", read_only=True)
    usedToday = serializers.IntegerField(source="used_today", read_only=True)
    totalCount = serializers.IntegerField(source="total_count", read_only=True)
    invalidReason = serializers.CharField(source="invalid_reason", read_only=True)
    exhaustedUntil = serializers.DateTimeField(source="exhausted_until", read_only=True, allow_null=True)
    lastUsedAt = serializers.DateTimeField(source="last_used_at", read_only=True, allow_null=True)
    lastError = serializers.CharField(source="last_error", read_only=True)
    rests = serializers.SerializerMethodField(help_text="The models resting on this key now.")
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)
    freeTier = serializers.BooleanField(source="free_tier", read_only=True, help_text="Its calls cost 0.")

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "label",
            "key",
            "project",
            "enabled",
            "dailyLimit",
            "freeTier",
            "baseUrl",
            "status",
            "statusText",
            "usedToday",
            "totalCount",
            "invalidReason",
            "exhaustedUntil",
            "lastUsedAt",
            "lastError",
            "rests",
            "createdAt",
        ]

    @extend_schema_field(KeyRestSerializer(many=True))
    def get_rests(self, key: ApiKey) -> Any:
        # The view passes every key's rests at once (pool.rests_by_key) rather than a query per key.
        rests = self.context.get("rests")
        return KeyRestSerializer(rests[key.pk] if rests is not None else [], many=True).data


class ApiKeyCreateSerializer(serializers.Serializer):
    key = StrictCharField(max_length=300, trim_whitespace=True)
    # The stubs see Field.label (the field's own caption) here; DRF's metaclass takes this as a declared field.
    label = StrictCharField(max_length=100, required=False, allow_blank=True, default="")  # type: ignore[assignment]
    dailyLimit = serializers.IntegerField(min_value=0, max_value=1_000_000, required=False)
    baseUrl = serializers.URLField(required=False, allow_blank=True, default="")
    freeTier = serializers.BooleanField(
        required=False, default=False, help_text="A free-tier project: its calls cost 0 in the usage figures."
    )
    project = StrictCharField(
        max_length=100,
        required=False,
        allow_blank=True,
        default="",
        help_text="Its Google Cloud project: keys of one project share its quotas.",
    )

    def validate_baseUrl(self, value: str) -> str:
        if value and urlsplit(value).scheme not in ("http", "https"):
            raise serializers.ValidationError("The base URL must start with http:// or https://.")
        return value

    def validate_key(self, value: str) -> str:
        from keys import crypto

        if any(ch.isspace() for ch in value):
            raise serializers.ValidationError("A Gemini API key has no spaces.")
        if not (value.isascii() and value.isprintable()):  # it travels in an HTTP header
            raise serializers.ValidationError("A Gemini API key is printable ASCII (letters, digits, - and _).")
        if ApiKey.objects.filter(fingerprint=crypto.fingerprint(value)).exists():
            raise serializers.ValidationError("This key is already in the pool.")
        return value

    def create(self, validated: dict[str, Any]) -> ApiKey:
        fields: dict[str, Any] = {
            "label": validated["label"],
            "base_url": validated["baseUrl"],
            "project": validated["project"].strip(),
            "free_tier": validated["freeTier"],
        }
        if "dailyLimit" in validated:
            fields["daily_limit"] = validated["dailyLimit"]
        try:
            with transaction.atomic():
                return ApiKey.create(validated["key"], **fields)
        except IntegrityError as error:  # the same key added twice at once: validate_key saw neither
            raise serializers.ValidationError({"key": "This key is already in the pool."}) from error
