"""OpenAI's Images API under /openai/v1, so the openai SDK, LibreChat, Open WebUI and the like use the pool.

POST /images/generations (JSON), POST /images/edits (multipart: image or image[]; or JSON with
images [{image_url}]), GET /models and /models/{model}; token as `Authorization: Bearer`.

Sizes and qualities become Gemini's ratios and resolutions as the jobs API plans them
(jobs.generation_plan): a WxH size picks the nearest aspect ratio and the smallest resolution
that covers it (one step up for quality high, two for max), and the image is delivered at
exactly WxH (Job.options["output"]); "auto" lets Gemini choose (1:1, or an edited image's own
ratio). OpenAI's model names (gpt-image-*, dall-e-*) are served by NanoClone's default model.
Answers are {"created", "data": [{"b64_json" | "url", "revised_prompt"}], "usage"}; errors
{"error": {"message", "type", "param", "code"}}.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_serializer, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from conversations import pipeline
from conversations.models import Job
from conversations.references import Reference
from keys.catalogue import MODELS, ImageModel, known_names, resolve_model
from nanoclone.api.envelope import StrictCharField, idempotency_key
from nanoclone.api.image_serializers import absolute, caller_base_url
from nanoclone.api.parsers import CappedJSONParser, CappedMultiPartParser
from nanoclone.dialects import base as dialects
from nanoclone.dialects.jobs import QUALITY_STEPS, generation_plan

SOURCE = "openai"
OPENAI_MODEL_PREFIXES = ("gpt-image", "dall-e", "chatgpt-image")
# OpenAI's qualities, as the jobs API's steps above the smallest covering resolution.
QUALITIES = {
    "auto": "standard",
    "low": "standard",
    "medium": "standard",
    "standard": "standard",
    "high": "high",
    "hd": "high",
    "xhigh": "high",
    "max": "ultra",
}
FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP"}
SIZE = re.compile(r"^(\d{1,5})[xX](\d{1,5})$")
MIN_SIDE, MAX_SIDE = 16, 8192


def _choice(name: str, choices: Mapping[str, str] | tuple[str, ...]) -> serializers.ChoiceField:
    listed = ", ".join(choices)
    return serializers.ChoiceField(
        choices=list(choices),
        required=False,
        allow_null=True,
        error_messages={"invalid_choice": f"Invalid value for {name}: '{{input}}'. Supported values: {listed}."},
    )


@extend_schema_serializer(component_name="OpenAIGenerationRequest")
class GenerationSerializer(serializers.Serializer):
    prompt = StrictCharField(allow_blank=True)
    model = StrictCharField(required=False, allow_blank=True, allow_null=True, max_length=80)
    n = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=pipeline.MAX_IMAGES_PER_JOB)
    size = StrictCharField(required=False, allow_blank=True, allow_null=True, max_length=20, default="auto")
    quality = _choice("quality", QUALITIES)
    response_format = _choice("response_format", ("b64_json", "url"))
    output_format = _choice("output_format", FORMATS)
    background = _choice("background", ("auto", "opaque", "transparent"))
    stream = serializers.BooleanField(required=False, allow_null=True)
    user = StrictCharField(required=False, allow_blank=True, allow_null=True, max_length=256)

    def validate_size(self, size: str | None) -> str:
        size = (size or "auto").strip().lower()
        if size == "auto":
            return size
        match = SIZE.match(size)
        width, height = (int(match[1]), int(match[2])) if match else (0, 0)
        if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
            raise serializers.ValidationError(
                f"Invalid size '{size}': use auto, 1024x1024, 1536x1024, 1024x1536 or any WIDTHxHEIGHT "
                f"with sides from {MIN_SIDE} to {MAX_SIDE} pixels."
            )
        if width * height > settings.MAX_IMAGE_PIXELS:
            raise serializers.ValidationError(f"Invalid size '{size}': more than {settings.MAX_IMAGE_PIXELS} pixels.")
        return f"{width}x{height}"

    def validate_background(self, background: str | None) -> str | None:
        if background == "transparent":
            raise serializers.ValidationError("Gemini draws opaque images: background 'transparent' is not available.")
        return background

    def validate_stream(self, stream: bool | None) -> bool | None:
        if stream:
            raise serializers.ValidationError("Streaming partial images is not available; send stream false.")
        return stream


@extend_schema_serializer(component_name="OpenAIEditRequest")
class EditSerializer(GenerationSerializer):
    # OpenAI's JSON form of an edit: images by URL (or data: URI) instead of uploaded files.
    images = serializers.ListField(child=serializers.DictField(), required=False, default=list)


def served_model(name: str | None) -> ImageModel:
    wanted = (name or "").strip()
    if wanted.lower().startswith(OPENAI_MODEL_PREFIXES):
        wanted = ""  # what OpenAI tools send by default: NanoClone's default model serves it
    model = resolve_model(wanted)
    if model is None:
        raise pipeline.InvalidRequest(
            "model", f"Unknown model '{name}'. Known models: {known_names()}; gpt-image-* and dall-e-* get the default."
        )
    return model


def plan(model: ImageModel, size: str, quality: str) -> tuple[str | None, str | None, dict[str, Any]]:
    """(aspect ratio, Gemini resolution, the output conversion) for an OpenAI size and quality."""
    if size == "auto":  # Gemini's own shape (1:1, or the edited image's); a higher quality, a larger one
        steps = QUALITY_STEPS[quality]
        start = model.resolutions.index("1K") if "1K" in model.resolutions else 0
        resolution = model.resolutions[min(start + steps, len(model.resolutions) - 1)] if steps else None
        return None, resolution, {}
    ratio, resolution = generation_plan(model, size, quality)
    width, height = (int(side) for side in size.split("x"))
    return ratio, resolution, {"width": width, "height": height}


def generation_request(
    request: Request, values: dict[str, Any], references: list[Reference], references_field: str
) -> pipeline.GenerationRequest:
    model = served_model(values.get("model"))
    output_format = FORMATS[values.get("output_format") or "png"]
    ratio, resolution, output = plan(model, values["size"], QUALITIES[values.get("quality") or "auto"])
    return pipeline.GenerationRequest(
        user=dialects.owner(request),
        prompt=values["prompt"],
        model=model.id,
        aspect_ratio=ratio,
        resolution=resolution,
        references=references,
        references_field=references_field,
        num_images=values.get("n") or 1,
        source=SOURCE,
        options={
            "output": {**output, "format": output_format},
            "openai": {key: values.get(key) for key in ("model", "size", "quality", "user") if values.get(key)},
        },
        base_url=caller_base_url(request),
        idempotency_key=idempotency_key(request),
    )


def images_body(job: Job, request: Request, response_format: str) -> dict[str, Any]:
    """OpenAI's ImagesResponse for a succeeded job."""
    images = pipeline.output_images(job)
    data = []
    for image in images:
        item = {"revised_prompt": job.prompt}
        if response_format == "url":
            item["url"] = absolute(request, image.signed_url(), job)  # works without a token, like OpenAI's
        else:
            item["b64_json"] = image.base64()
        data.append(item)
    body: dict[str, Any] = {"created": int(job.created_at.timestamp()), "data": data}
    if images:
        body["output_format"] = images[0].format.lower()
        body["size"] = f"{images[0].width}x{images[0].height}"
    message = job.assistant_message
    if message is not None and message.total_tokens is not None:
        body["usage"] = {
            "input_tokens": message.prompt_tokens or 0,
            "output_tokens": message.output_tokens or 0,
            "total_tokens": message.total_tokens,
        }
    return body


def error_body(message: str, status: int, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    kind = "server_error" if status >= 500 else "requests" if status == 429 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@csrf_exempt  # a POST to an unknown path: the door's JSON 404, not the CSRF failure page
def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Whatever else is under /openai/: OpenAI's 404, never the HTML page."""
    return JsonResponse(error_body(f"Invalid URL ({request.method} {request.path})", 404), status=404)


# --- OpenAPI: OpenAI's shapes, for drf-spectacular ----------------------------------------

OPENAI_ERROR = inline_serializer(
    "OpenAIError",
    {
        "error": inline_serializer(
            "OpenAIErrorDetail",
            {
                "message": serializers.CharField(),
                "type": serializers.CharField(),
                "param": serializers.CharField(allow_null=True),
                "code": serializers.CharField(allow_null=True),
            },
        )
    },
)
IMAGES_RESPONSE = inline_serializer(
    "OpenAIImagesResponse",
    {
        "created": serializers.IntegerField(),
        "data": serializers.ListField(
            child=inline_serializer(
                "OpenAIImage",
                {
                    "b64_json": serializers.CharField(required=False),
                    "url": serializers.URLField(required=False),
                    "revised_prompt": serializers.CharField(allow_blank=True),
                },
            )
        ),
        "output_format": serializers.CharField(required=False),
        "size": serializers.CharField(required=False),
        "usage": inline_serializer(
            "OpenAIUsage",
            {
                "input_tokens": serializers.IntegerField(),
                "output_tokens": serializers.IntegerField(),
                "total_tokens": serializers.IntegerField(),
            },
            required=False,
        ),
    },
)


@extend_schema_field(OpenApiTypes.BINARY)
class UploadField(serializers.FileField):
    """An uploaded file, documented as the bytes it is (FileField alone reads as a URI)."""


EDIT_UPLOAD = inline_serializer(
    "OpenAIEditUpload",
    {
        **{name: field for name, field in EditSerializer().get_fields().items() if name != "images"},
        "image": serializers.ListField(child=UploadField(), help_text="The image(s) to edit (or image[])."),
    },
)
OPENAI_MODEL = inline_serializer(
    "OpenAIModel",
    {
        "id": serializers.CharField(),
        "object": serializers.CharField(),
        "created": serializers.IntegerField(),
        "owned_by": serializers.CharField(),
    },
)
# A generation's statuses besides the shared errors: a reused Idempotency-Key (409), a spent pool
# (429, with Retry-After), Gemini unavailable (502), no key at all (503).
GENERATION_RESPONSES = {200: IMAGES_RESPONSE, **dialects.errors(OPENAI_ERROR, 409, 422, 502, 503)}


class OpenAISchema(dialects.DialectSchema):
    tag = "openai"
    error_serializer = OPENAI_ERROR


class OpenAIView(dialects.DialectView):
    schema = OpenAISchema()
    no_usable_key_status = 429

    def render_problem(self, problem: dialects.Problem) -> Response:
        status = problem.status
        if problem.code == "no_usable_key" and "Retry-After" not in problem.headers:
            status = 503  # no key will do (none configured, all invalid): not a quota to wait out
        code: str | None = {
            "unauthenticated": "invalid_api_key",
            "invalid_token": "invalid_api_key",
            "rate_limited": "rate_limit_exceeded",
            "invalid_request": None,
        }.get(problem.code, problem.code)
        return Response(error_body(problem.message, status, problem.param, code), status=status)

    def generate(self, request: Request, generation: pipeline.GenerationRequest, response_format: str) -> Response:
        # A sync door: a request no key could serve is refused at once, not recorded as a failed job.
        job = pipeline.start(generation, pipeline.RunMode.INLINE, require_usable_key=True)
        # OpenAI's request id header (the SDK's `_request_id`): here the job's id.
        headers = {"x-request-id": str(job.id)}
        if job.state == Job.State.SUCCEEDED:
            return Response(images_body(job, request, response_format), headers=headers)
        seconds = max(1, int((job.retry_after - job.updated_at).total_seconds())) if job.retry_after else None
        status, code = job.failure_status, job.error_code or None
        if job.error_code in Job.REFUSED:  # the way OpenAI refuses a moderated prompt
            status, code = 400, "moderation_blocked"
        elif job.error_code == Job.ErrorCode.NO_USABLE_KEY:
            status = 429 if seconds else 503
        response = Response(error_body(job.error, status, code=code), status=status, headers=headers)
        if seconds:
            response["Retry-After"] = str(seconds)
        return response


class GenerationsView(OpenAIView):
    @extend_schema(request=GenerationSerializer, responses=GENERATION_RESPONSES, summary="OpenAI: create images")
    def post(self, request: Request) -> Response:
        body = GenerationSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = body.validated_data
        return self.generate(request, generation_request(request, values, [], "image"), _format(values))


class EditsView(OpenAIView):
    parser_classes = [CappedMultiPartParser, CappedJSONParser]

    @extend_schema(
        request={"multipart/form-data": EDIT_UPLOAD, "application/json": EditSerializer},
        responses=GENERATION_RESPONSES,
        summary="OpenAI: edit images",
    )
    def post(self, request: Request) -> Response:
        if request.FILES.getlist("mask") or (isinstance(request.data, dict) and request.data.get("mask")):
            raise pipeline.InvalidRequest(
                "mask", "Gemini edits without masks: leave mask out and say in the prompt which part to change."
            )
        body = EditSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = body.validated_data
        images: list[Reference] = [*_read_uploads([*request.FILES.getlist("image"), *request.FILES.getlist("image[]")])]
        for index, item in enumerate(values["images"]):
            url = item.get("image_url")
            if not isinstance(url, str) or not url:
                raise pipeline.InvalidRequest("images", f"images[{index}] needs an image_url (a URL or a data: URI).")
            images.append(url)
        if not images:
            raise pipeline.InvalidRequest(
                "image", "image is required: upload the image(s) to edit as image or image[]."
            )
        return self.generate(request, generation_request(request, values, images, "image"), _format(values))


def _format(values: dict[str, Any]) -> str:
    return str(values.get("response_format") or "b64_json")


def _read_uploads(files: list[UploadedFile]) -> list[bytes]:
    """The uploaded images as bytes, an oversized one refused before it is read into memory."""
    for number, upload in enumerate(files, start=1):
        if (upload.size or 0) > settings.MAX_IMAGE_BYTES:
            limit = settings.MAX_IMAGE_BYTES // (1024 * 1024)
            raise pipeline.InvalidRequest("image", f"Image {number} ({upload.name}) is larger than {limit} MB.")
    return [upload.read() for upload in files]


def model_object(model: ImageModel) -> dict[str, Any]:
    return {"id": model.id, "object": "model", "created": 0, "owned_by": "google"}


class ModelsView(OpenAIView):
    @extend_schema(
        responses={
            200: inline_serializer(
                "OpenAIModelList",
                {"object": serializers.CharField(), "data": serializers.ListField(child=OPENAI_MODEL)},
            )
        },
        summary="OpenAI: list models",
        operation_id="openai_models_list",
    )
    def get(self, request: Request) -> Response:
        return Response({"object": "list", "data": [model_object(model) for model in MODELS.values()]})


class ModelView(OpenAIView):
    @extend_schema(responses={200: OPENAI_MODEL}, summary="OpenAI: retrieve a model", operation_id="openai_models_get")
    def get(self, request: Request, model: str) -> Response:
        found = resolve_model(model)
        if found is None:
            return self.render_problem(
                dialects.Problem(404, "model_not_found", f"The model '{model}' does not exist.", "model")
            )
        return Response(model_object(found))
