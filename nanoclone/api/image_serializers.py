from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from conversations.models import Job
from gallery.models import Image


def absolute(request: Any, path: str, job: Job | None = None) -> str:
    """`path` as an absolute URL: NANOCLONE_PUBLIC_URL, else the host the caller used, now (`request`)
    or when it made `job` (callbacks and webhooks are built outside any request)."""
    if settings.PUBLIC_URL:
        return settings.PUBLIC_URL + path
    if request is not None:
        return request.build_absolute_uri(path)
    return (job.options.get("base_url", "") if job is not None else "") + path


def caller_base_url(request: Any) -> str:
    """Where the caller reached us (scheme and host): GenerationRequest.base_url."""
    return request.build_absolute_uri("/").rstrip("/")


# Declared on ImageSerializer and used as they are by its to_representation(): DRF's own conversions.
_CREATED_AT = serializers.DateTimeField(source="created_at")
# What Gemini bills for the call that made it (USD, by the price table); null for references.
_COST = serializers.DecimalField(
    source="cost", max_digits=10, decimal_places=6, coerce_to_string=False, allow_null=True, read_only=True
)


def _uuid(value: Any) -> str | None:
    return None if value is None else str(value)


class ImageSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    thumbnailUrl = serializers.SerializerMethodField()
    mimeType = serializers.CharField(source="mime_type")
    conversationId = serializers.UUIDField(source="conversation_id")
    messageId = serializers.UUIDField(source="message_id", allow_null=True)  # a running job's image has none yet
    createdAt = _CREATED_AT
    sizeBytes = serializers.IntegerField(source="bytes")
    estimatedCost = _COST

    class Meta:
        model = Image
        fields = [
            "id",
            "url",
            "thumbnailUrl",
            "width",
            "height",
            "mimeType",
            "sizeBytes",
            "estimatedCost",
            "prompt",
            "model",
            "role",
            "favorite",
            "conversationId",
            "messageId",
            "createdAt",
        ]

    def get_url(self, image: Image) -> str:
        return absolute(self.context.get("request"), image.get_absolute_url())

    def get_thumbnailUrl(self, image: Image) -> str:
        return absolute(self.context.get("request"), image.thumbnail_url())

    def to_representation(self, image: Image) -> dict[str, Any]:
        """What DRF makes of the fields above, written out (a test holds the two equal). DRF builds
        a ModelSerializer's fields anew for every serializer made, 0.45 ms each time: a generation's
        answer made one, and a conversation one per message. The fields stay for the schema."""
        return {
            "id": str(image.id),
            "url": self.get_url(image),
            "thumbnailUrl": self.get_thumbnailUrl(image),
            "width": image.width,
            "height": image.height,
            "mimeType": image.mime_type,
            "sizeBytes": image.bytes,
            "estimatedCost": None if image.cost is None else _COST.to_representation(image.cost),
            "prompt": image.prompt,
            "model": image.model,
            "role": str(image.role),
            "favorite": image.favorite,
            "conversationId": _uuid(image.conversation_id),
            "messageId": _uuid(image.message_id),
            "createdAt": _CREATED_AT.to_representation(image.created_at),
        }
