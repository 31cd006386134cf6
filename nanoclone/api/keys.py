from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from keys import pool
from keys.models import ApiKey
from nanoclone.api.envelope import ERROR_ENVELOPE, CappedJSONParser, enveloped, fail, ok
from nanoclone.api.key_serializers import ApiKeyCreateSerializer, ApiKeySerializer

DENIED = {401: ERROR_ENVELOPE, 403: ERROR_ENVELOPE}


class IsStaff(permissions.BasePermission):
    message = "Managing Gemini keys requires a staff account."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


class KeysView(APIView):
    """The key pool: list (masked), add, delete (?id=)."""

    permission_classes = [permissions.IsAuthenticated, IsStaff]
    serializer_class = ApiKeySerializer
    parser_classes = [CappedJSONParser]

    @extend_schema(responses={200: enveloped("ApiKeyListEnvelope", ApiKeySerializer(many=True)), **DENIED})
    def get(self, request: Request) -> Response:
        keys = list(ApiKey.objects.all())
        return ok(ApiKeySerializer(keys, many=True, context={"rests": pool.rests_by_key(keys)}).data)

    @extend_schema(
        request=ApiKeyCreateSerializer,
        responses={201: enveloped("ApiKeyEnvelope", ApiKeySerializer()), 400: ERROR_ENVELOPE, **DENIED},
    )
    def post(self, request: Request) -> Response:
        serializer = ApiKeyCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = serializer.save()
        return ok(ApiKeySerializer(key).data, status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[OpenApiParameter("id", OpenApiTypes.INT, required=True, description="The key's id.")],
        responses={
            200: enveloped("ApiKeyDeletedEnvelope", serializers.DictField(child=serializers.IntegerField())),
            400: ERROR_ENVELOPE,
            404: ERROR_ENVELOPE,
            **DENIED,
        },
    )
    def delete(self, request: Request) -> Response:
        key_id = request.query_params.get("id", "")
        if not key_id.isdigit():
            return fail("invalid_request", "Pass the key's id as ?id=<id>.", 400, field="id")
        deleted, _ = ApiKey.objects.filter(pk=int(key_id)).delete()
        if not deleted:
            return fail("not_found", f"No key with id {key_id}.", 404)
        return ok({"deleted": int(key_id)})
