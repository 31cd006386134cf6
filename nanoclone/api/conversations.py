from __future__ import annotations

from django.db.models import Count, Q, QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from conversations import pipeline
from conversations.models import Conversation, Job
from gallery.models import Image
from keys.catalogue import MODELS
from keys.models import ModelNotice
from nanoclone.api.conversation_serializers import (
    ConversationDetailSerializer,
    ConversationSerializer,
    GenerateResultSerializer,
    GenerateSerializer,
    ImageModelSerializer,
    MessageSerializer,
    usage_of,
)
from nanoclone.api.envelope import ERROR_ENVELOPE, CappedJSONParser, enveloped, fail, idempotency_key, ok, owner
from nanoclone.api.image_serializers import ImageSerializer, caller_base_url
from nanoclone.api.pagination import EnvelopePagination

# The pipeline's field names, as this API's clients send them.
CLIENT_NAMES = {"aspect_ratio": "aspectRatio", "thinking_level": "thinkingLevel"}


def failure_response(job: Job) -> Response:
    """A failed synchronous generation in the envelope, with the status that fits the reason."""
    headers = {}
    if job.retry_after:
        seconds = max(1, int((job.retry_after - job.updated_at).total_seconds()))
        headers["Retry-After"] = str(seconds)
    # Gemini's own word for a refusal (a finishReason or a blockReason), where it gave one.
    reason = {"geminiReason": job.refusal.get("finishReason") or job.refusal.get("blockReason")} if job.refusal else {}
    return fail(
        job.error_code or "failed",
        job.error,
        job.failure_status,
        headers=headers,
        conversationId=str(job.conversation_id),
        jobId=str(job.id),
        **reason,
    )


class GenerateView(APIView):
    """Generate an image from a prompt (and reference images); continue a conversation to edit."""

    serializer_class = GenerateSerializer
    parser_classes = [CappedJSONParser]

    @extend_schema(
        request=GenerateSerializer,
        responses={
            200: enveloped("GenerateEnvelope", GenerateResultSerializer()),
            **{code: ERROR_ENVELOPE for code in (400, 401, 404, 413, 415, 422, 429, 502, 503)},
        },
    )
    def post(self, request: Request) -> Response:
        body = GenerateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = body.validated_data
        try:
            job = pipeline.start(
                pipeline.GenerationRequest(
                    user=owner(request),
                    prompt=values["prompt"],
                    model=values.get("model"),
                    aspect_ratio=values.get("aspectRatio"),
                    resolution=values.get("resolution"),
                    thinking_level=values.get("thinkingLevel"),
                    grounding=values["grounding"],
                    conversation_id=values.get("conversationId"),
                    references=values["images"],
                    source="api",
                    base_url=caller_base_url(request),
                    idempotency_key=idempotency_key(request),
                ),
                pipeline.RunMode.INLINE,
            )
        except pipeline.InvalidRequest as error:
            error.field = CLIENT_NAMES.get(error.field, error.field)  # name it as the client did
            raise
        if job.state != Job.State.SUCCEEDED:
            return failure_response(job)
        message = job.assistant_message
        assert message is not None
        images = pipeline.output_images(job)
        context = {"request": request}
        return ok(
            {
                "conversationId": str(job.conversation_id),
                "jobId": str(job.id),
                "message": {
                    "id": str(message.id),
                    "role": "assistant",
                    "content": message.text,
                    "imageBase64": images[0].base64() if images else None,
                    "images": ImageSerializer(images, many=True, context=context).data,
                    "usage": usage_of(message),
                    "grounding": message.grounding,
                    "createdAt": message.created_at.isoformat(),
                },
                "model": job.model,
            }
        )


def _conversations(request: Request) -> QuerySet[Conversation]:
    # Explicit order: Django drops Meta.ordering from GROUP BY queries, and pages need a stable one.
    return (
        Conversation.objects.filter(user=owner(request))
        .annotate(
            message_count=Count("messages", distinct=True),
            image_count=Count("images", filter=Q(images__role=Image.Role.OUTPUT), distinct=True),
        )
        .order_by("-updated_at", "-id")
    )


class ConversationList(generics.ListAPIView):
    serializer_class = ConversationSerializer
    pagination_class = EnvelopePagination

    def get_queryset(self) -> QuerySet[Conversation]:
        return _conversations(self.request)


class ConversationDetail(APIView):
    serializer_class = ConversationSerializer

    @extend_schema(
        responses={200: enveloped("ConversationEnvelope", ConversationDetailSerializer()), 404: ERROR_ENVELOPE}
    )
    def get(self, request: Request, conversation_id: str) -> Response:
        conversation = get_object_or_404(_conversations(request), pk=conversation_id)
        messages = conversation.messages.prefetch_related("images").order_by("created_at")
        data = dict(ConversationSerializer(conversation).data)
        data["messages"] = MessageSerializer(messages, many=True, context={"request": request}).data
        return ok(data)


class ModelList(APIView):
    """The model table: ids, labels, the aliases clients may send, aspect ratios and resolutions per model."""

    @extend_schema(responses={200: enveloped("ModelListEnvelope", ImageModelSerializer(many=True))})
    def get(self, request: Request) -> Response:
        notices = dict(ModelNotice.objects.values_list("model", "notice"))
        return ok(ImageModelSerializer(MODELS.values(), many=True, context={"notices": notices}).data)
