from __future__ import annotations

from typing import Any

from rest_framework import serializers

from conversations import references
from conversations.models import Conversation, Message
from keys.catalogue import ALIASES, ImageModel, default_model
from nanoclone.api.envelope import StrictCharField, StrictUUIDField
from nanoclone.api.image_serializers import ImageSerializer


class GenerateSerializer(serializers.Serializer):
    prompt = StrictCharField(
        trim_whitespace=True,
        min_length=1,
        error_messages={"blank": "Prompt is required and must not be empty."},  # the pipeline's words
        help_text="What to draw, or how to edit.",
    )
    conversationId = StrictUUIDField(
        required=False, allow_null=True, help_text="Continue this conversation: its last image gets edited."
    )
    model = StrictCharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=80,
        help_text="A model id or alias (GET /api/models).",
    )
    aspectRatio = StrictCharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=10,
        help_text="e.g. 16:9; per model, see /api/models.",
    )
    resolution = StrictCharField(
        required=False, allow_blank=True, allow_null=True, max_length=10, help_text="512, 1K, 2K or 4K, per model."
    )
    thinkingLevel = StrictCharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=10,
        help_text="minimal, medium or high, per model (GET /api/models: thinkingLevels).",
    )
    grounding = serializers.BooleanField(
        required=False, default=False, help_text="Ground the image in Google Search (models with grounding)."
    )
    images = serializers.ListField(
        child=StrictCharField(trim_whitespace=True, min_length=1),
        required=False,
        max_length=20,
        default=list,
        help_text="Reference images to edit or combine: base64, data: URIs, http(s) URLs, your own NanoClone "
        "/files/ links or gallery image ids (JPEG, PNG, WEBP; 10 MB each).",
    )


def usage_of(message: Message) -> dict[str, int | None] | None:
    if message.total_tokens is None:
        return None
    return {
        "promptTokens": message.prompt_tokens,
        "outputTokens": message.output_tokens,
        "totalTokens": message.total_tokens,
    }


class MessageSerializer(serializers.ModelSerializer):
    content = serializers.CharField(source="text")
    createdAt = serializers.DateTimeField(source="created_at")
    images = serializers.SerializerMethodField()
    usage = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = ["id", "role", "content", "model", "status", "error", "usage", "grounding", "images", "createdAt"]

    def get_images(self, message: Message) -> list[dict[str, Any]]:
        return ImageSerializer(message.images.all(), many=True, context=self.context).data  # type: ignore[return-value]

    def get_usage(self, message: Message) -> dict[str, int | None] | None:
        return usage_of(message)


class ConversationSerializer(serializers.ModelSerializer):
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")
    messageCount = serializers.IntegerField(source="message_count", read_only=True)
    imageCount = serializers.IntegerField(source="image_count", read_only=True)

    class Meta:
        model = Conversation
        fields = ["id", "title", "createdAt", "updatedAt", "messageCount", "imageCount"]


class ConversationDetailSerializer(ConversationSerializer):
    """Documents GET /api/conversations/<id>: the conversation and its messages, oldest first."""

    messages = MessageSerializer(many=True, read_only=True)

    class Meta(ConversationSerializer.Meta):
        fields = [*ConversationSerializer.Meta.fields, "messages"]


class GeneratedMessageSerializer(serializers.Serializer):
    """Documents the assistant message POST /api/generate answers with."""

    id = serializers.UUIDField()
    role = serializers.CharField(default="assistant")
    content = serializers.CharField(help_text="The text Gemini returned with the image.")
    imageBase64 = serializers.CharField(allow_null=True, help_text="The first image, base64 (no data: prefix).")
    images = ImageSerializer(many=True, help_text="Every image of the answer; `url` needs the same auth as the API.")
    usage = serializers.DictField(child=serializers.IntegerField(allow_null=True), allow_null=True)
    grounding = serializers.JSONField(
        allow_null=True, help_text='With grounding: {"sources": [{"title", "uri"}], "queries": [...]}.'
    )
    createdAt = serializers.DateTimeField()


class GenerateResultSerializer(serializers.Serializer):
    """Documents POST /api/generate's `data`."""

    conversationId = serializers.UUIDField(help_text="Send it back as conversationId to continue (edit).")
    jobId = serializers.UUIDField()
    message = GeneratedMessageSerializer()
    model = serializers.CharField(help_text="The Gemini model id that answered (aliases resolved).")


class ImageModelSerializer(serializers.Serializer):
    """A row of the model table (nanoclone/gemini_models.py)."""

    id = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # a field named like Field.label, as DRF allows
    default = serializers.SerializerMethodField(method_name="is_default")
    aliases = serializers.SerializerMethodField()
    aspectRatios = serializers.ListField(child=serializers.CharField(), source="aspect_ratios")
    resolutions = serializers.ListField(child=serializers.CharField())
    maxReferenceImages = serializers.SerializerMethodField()
    status = serializers.CharField(help_text="What Google says of it: GA, deprecated, no free tier...")
    deprecated = serializers.BooleanField()
    thinkingLevels = serializers.ListField(child=serializers.CharField(), source="thinking_levels")
    grounding = serializers.BooleanField(help_text="Offers Google Search grounding.")
    geminiNotice = serializers.SerializerMethodField(
        help_text="What Gemini said of it that the catalogue doesn't say yet (no longer available...), or null."
    )

    def is_default(self, model: ImageModel) -> bool:
        return default_model().id == model.id

    def get_aliases(self, model: ImageModel) -> list[str]:
        return sorted(alias for alias, target in ALIASES.items() if target == model.id)

    def get_geminiNotice(self, model: ImageModel) -> str | None:
        return self.context.get("notices", {}).get(model.id)

    def get_maxReferenceImages(self, model: ImageModel) -> int:
        return references.limit(model)
