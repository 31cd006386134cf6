from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from django.db import IntegrityError, transaction
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from keys import credentials
from keys.models import ApiKey, KeyRest
from nanoclone.api.envelope import StrictCharField


class KeyRestSerializer(serializers.Serializer):
    """A model resting on a key, or on every key of its project: why, and until when."""

    model = serializers.CharField()
    on = serializers.SerializerMethodField(help_text="key, or project when the key's project shares the quota.")
    kind = serializers.CharField(
        help_text="minute, day, unknown (a 429 without details), no_quota, retired, or capacity (Vertex AI busy)."
    )
    why = serializers.CharField(help_text="Google's quota id, e.g. GenerateRequestsPerDayPerProjectPerModel-FreeTier.")
    until = serializers.DateTimeField()

    def get_on(self, rest: KeyRest) -> str:
        return "project" if rest.project else "key"


class ApiKeySerializer(serializers.ModelSerializer):
    """A credential as the API shows it: masked (a service account by its email), never the secret,
    its proxy without the password."""

    key = serializers.CharField(source="masked", read_only=True)
    kind = serializers.ChoiceField(choices=ApiKey.Kind.choices, read_only=True)
    location = serializers.CharField(read_only=True, help_text="A service account's Vertex AI location.")
    proxy = serializers.CharField(source="proxy_shown", read_only=True, help_text="Without its password.")
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
            "kind",
            "key",
            "project",
            "location",
            "proxy",
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
    kind = serializers.ChoiceField(
        choices=ApiKey.Kind.choices,
        default=ApiKey.Kind.AI_STUDIO,
        help_text="An express-mode key can't be told from an AI Studio key by its text: say which it is.",
    )
    key = StrictCharField(
        max_length=20_000,
        trim_whitespace=True,
        required=False,
        help_text="The API key; for a service account, its JSON key as text (or send serviceAccount).",
    )
    serviceAccount = serializers.DictField(
        required=False, help_text="A service account's JSON key, as an object (kind vertex_service_account)."
    )
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
        help_text="Its Google Cloud project: keys of one project share its quotas (a service account's is its own).",
    )
    location = StrictCharField(
        max_length=40,
        required=False,
        allow_blank=True,
        default="",
        help_text="A service account's Vertex AI location (default global).",
    )
    proxy = StrictCharField(
        max_length=500,
        required=False,
        allow_blank=True,
        default="",
        help_text="http://, https:// or socks5:// proxy URL, with user:password@ if it asks for them.",
    )

    def validate_baseUrl(self, value: str) -> str:
        if value and urlsplit(value).scheme not in ("http", "https"):
            raise serializers.ValidationError("The base URL must start with http:// or https://.")
        return value

    def validate_location(self, value: str) -> str:
        if value and not re.fullmatch(r"[a-z0-9-]+", value):
            raise serializers.ValidationError("A Vertex AI location is like global, us-central1 or europe-west4.")
        return value

    def validate_proxy(self, value: str) -> str:
        try:
            credentials.proxy(value)
        except credentials.CredentialError as error:
            raise serializers.ValidationError(str(error)) from error
        return value

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        service_account = data.pop("serviceAccount", None)
        secret_field = "key"
        if service_account is not None:
            if data["kind"] != ApiKey.Kind.VERTEX_SERVICE_ACCOUNT:
                raise serializers.ValidationError({"kind": "A serviceAccount is of kind vertex_service_account."})
            data["key"], secret_field = json.dumps(service_account), "serviceAccount"
        if not data.get("key"):
            raise serializers.ValidationError({"key": "This field is required."})
        if data["kind"] == ApiKey.Kind.VERTEX_SERVICE_ACCOUNT:
            if data["project"]:
                raise serializers.ValidationError({"project": "A service account's project is the one in its key."})
        elif data["location"]:
            raise serializers.ValidationError({"location": "Only a service account has a location."})
        fields: dict[str, Any] = {
            "label": data["label"],
            "base_url": data["baseUrl"],
            "project": data["project"].strip(),
            "free_tier": data["freeTier"],
            "location": data["location"],
        }
        if "dailyLimit" in data:
            fields["daily_limit"] = data["dailyLimit"]
        try:
            data["credential"] = ApiKey.new(data["key"], data["kind"], data["proxy"], **fields)
        except credentials.CredentialError as error:
            raise serializers.ValidationError({secret_field: str(error)}) from error
        return data

    def create(self, validated: dict[str, Any]) -> ApiKey:
        credential: ApiKey = validated["credential"]
        try:
            with transaction.atomic():
                credential.save(force_insert=True)
        except IntegrityError as error:  # the same key added twice at once: validate() saw neither
            raise serializers.ValidationError({"key": "This credential is already in the pool."}) from error
        return credential
