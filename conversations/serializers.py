from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from django.conf import settings
from rest_framework import serializers

from conversations.models import Conversation, Message
from gallery.serializers import ImageSerializer
from nanoclone.api import StrictCharField

DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w-]+=[^;,]*)*);base64,(?P<data>.*)$", re.S)


def decode_image_field(value: str, number: int) -> bytes:
    """Base64 or a data: URI to bytes, refusing oversized input before decoding it."""
    match = DATA_URI.match(value)
    payload = match.group("data") if match else value
    if len(payload) * 3 // 4 > settings.MAX_IMAGE_BYTES:
        raise serializers.ValidationError(
            f"Image {number} is larger than {settings.MAX_IMAGE_BYTES // (1024 * 1024)} MB."
        )
    try:
        return base64.b64decode(payload.strip(), validate=True)
    except (binascii.Error, ValueError) as error:
        raise serializers.ValidationError(f"Image {number} is not valid base64 or a data: URI.") from error


class GenerateSerializer(serializers.Serializer):
    prompt = StrictCharField(allow_blank=True, trim_whitespace=True)
    conversationId = serializers.UUIDField(required=False, allow_null=True)
    model = StrictCharField(required=False, allow_blank=True, allow_null=True, max_length=80)
    aspectRatio = StrictCharField(required=False, allow_blank=True, allow_null=True, max_length=10)
    resolution = StrictCharField(required=False, allow_blank=True, allow_null=True, max_length=10)
    images = serializers.ListField(
        child=StrictCharField(trim_whitespace=True), required=False, max_length=20, default=list
    )

    def validate_images(self, values: list[str]) -> list[bytes]:
        return [decode_image_field(value, number) for number, value in enumerate(values, start=1)]


class MessageSerializer(serializers.ModelSerializer):
    content = serializers.CharField(source="text")
    createdAt = serializers.DateTimeField(source="created_at")
    images = serializers.SerializerMethodField()
    usage = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = ["id", "role", "content", "model", "status", "error", "usage", "images", "createdAt"]

    def get_images(self, message: Message) -> list[dict[str, Any]]:
        return ImageSerializer(message.images.all(), many=True, context=self.context).data  # type: ignore[return-value]

    def get_usage(self, message: Message) -> dict[str, int | None] | None:
        if message.total_tokens is None:
            return None
        return {
            "promptTokens": message.prompt_tokens,
            "outputTokens": message.output_tokens,
            "totalTokens": message.total_tokens,
        }


class ConversationSerializer(serializers.ModelSerializer):
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")
    messageCount = serializers.IntegerField(source="message_count", read_only=True)
    imageCount = serializers.IntegerField(source="image_count", read_only=True)

    class Meta:
        model = Conversation
        fields = ["id", "title", "createdAt", "updatedAt", "messageCount", "imageCount"]
