"""GET /api/usage: images, calls, estimated cost and what the batch price saved, by key, project,
model, user, door, day, kind of credential or price tier.

Staff see every user's calls; anyone else sees their own.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from keys import usage
from keys.models import quota_day
from nanoclone.api.envelope import ERROR_ENVELOPE, enveloped, ok

MAX_DAYS = 366


class UsageQuery(serializers.Serializer):
    # "from" is a Python keyword: the field is added under that name below.
    to = serializers.DateField(required=False, help_text="Last quota day, inclusive (default: today).")
    group_by = serializers.ChoiceField(choices=list(usage.GROUPS), default="model")

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["from"] = serializers.DateField(
            required=False, help_text="First quota day (default: 29 days before to)."
        )
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        end = attrs.get("to") or quota_day()
        start = attrs.get("from") or max(end, dt.date.min + dt.timedelta(days=29)) - dt.timedelta(days=29)
        if start > end:
            raise serializers.ValidationError({"from": "from must not be after to."})
        if (end - start).days >= MAX_DAYS:
            raise serializers.ValidationError({"from": f"Ask for at most {MAX_DAYS} days at a time."})
        return {**attrs, "from": start, "to": end}


class UsageRowSerializer(serializers.Serializer):
    group = serializers.CharField(
        help_text="The key, project, model, user, door, day, kind of credential or price tier (standard, batch)."
    )
    calls = serializers.IntegerField(help_text="Upstream Gemini calls, retries and failovers included.")
    images = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=14, decimal_places=6, coerce_to_string=False, help_text="USD.")
    saved = serializers.DecimalField(
        max_digits=14,
        decimal_places=6,
        coerce_to_string=False,
        help_text="USD: what the standard price would have cost more (calls at the Batch API's price).",
    )
    exhausted = serializers.IntegerField(help_text="429 RESOURCE_EXHAUSTED answers.")
    failed = serializers.IntegerField(help_text="Refused, rejected and failed calls.")


class UsageSerializer(serializers.Serializer):
    groupBy = serializers.CharField()
    scope = serializers.ChoiceField(choices=["all", "own"], help_text="all: every user's calls (staff).")
    rows = UsageRowSerializer(many=True)
    total = UsageRowSerializer()

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["from"], fields["to"] = serializers.DateField(), serializers.DateField()
        return fields


class UsageView(APIView):
    """What the key pool served and what it would have cost, over a span of quota days."""

    @extend_schema(
        parameters=[
            OpenApiParameter("from", dt.date, description="First quota day (default: 29 days before `to`)."),
            OpenApiParameter("to", dt.date, description="Last quota day, inclusive (default: today)."),
            OpenApiParameter("group_by", str, enum=list(usage.GROUPS), description="Default: model."),
        ],
        responses={200: enveloped("UsageEnvelope", UsageSerializer()), 400: ERROR_ENVELOPE, 401: ERROR_ENVELOPE},
    )
    def get(self, request: Request) -> Response:
        query = UsageQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        values = query.validated_data
        staff = bool(request.user.is_staff)
        rows = usage.summarize(values["from"], values["to"], values["group_by"], None if staff else request.user.pk)
        total = usage.UsageRow(
            "total",
            sum(row.calls for row in rows),
            sum(row.images for row in rows),
            sum((row.cost for row in rows), Decimal(0)),
            sum(row.exhausted for row in rows),
            sum(row.failed for row in rows),
            sum((row.saved for row in rows), Decimal(0)),
        )
        data = {
            "from": values["from"],
            "to": values["to"],
            "groupBy": values["group_by"],
            "scope": "all" if staff else "own",
            "rows": UsageRowSerializer(rows, many=True).data,
            "total": UsageRowSerializer(total).data,
        }
        return ok(data)
