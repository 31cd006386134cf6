"""Gemini's own API, so google-genai, @google/genai and any Gemini app use the pool by changing the base URL.

POST /{v1beta,v1}/models/{model}:generateContent and :streamGenerateContent (?alt=sse: Gemini's
server-sent events), GET /{v1beta,v1}/models and /models/{model}; its Batch API (batchGenerateContent
and /batches) is gemini_batches. The NanoClone token comes the ways Gemini clients send a key:
x-goog-api-key, ?key= or Authorization: Bearer.

A request is Gemini's own: contents (text and inline images; the earlier turns a stateless client
sends become the new conversation's first messages, GenerationRequest.history), generationConfig
(responseModalities, imageConfig, thinkingConfig) and tools (googleSearch). It runs inline through
the pool. The answer is Gemini's JSON; refusals read as Gemini's do (promptFeedback.blockReason,
finishReason IMAGE_SAFETY or NO_IMAGE, with a 200); errors are {"error": {code, message, status}},
a spent pool 429 RESOURCE_EXHAUSTED with Retry-After.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from conversations import pipeline
from conversations.models import Job, Message
from keys.catalogue import MODELS, ImageModel, resolve_model
from keys.gemini.client import standard_base64
from nanoclone.api.envelope import idempotency_key
from nanoclone.api.image_serializers import caller_base_url
from nanoclone.dialects import base as dialects

SOURCE = "gemini"

# Google's HTTP statuses and the status names its error bodies carry with them.
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
# The pipeline's field names, as a Gemini request spells them.
FIELDS = {
    "prompt": "contents",
    "model": "model",
    "aspect_ratio": "generationConfig.imageConfig.aspectRatio",
    "resolution": "generationConfig.imageConfig.imageSize",
    "thinking_level": "generationConfig.thinkingConfig.thinkingLevel",
    "grounding": "tools",
}
# Failed jobs Gemini itself answers with a 200: the refusal is in the body, as clients expect it.
# A text-only answer (NO_IMAGE) too: Gemini says so in finishReason.
REFUSALS = (*Job.REFUSED, Job.ErrorCode.NO_IMAGE)
_CAMEL = re.compile(r"([A-Z])")


class GeminiKeyAuthentication(dialects.DialectTokenAuthentication):
    """The NanoClone token where Gemini clients put their key: x-goog-api-key, ?key=, or Authorization: Bearer."""

    def authenticate(self, request: Request) -> Any:
        key = request.META.get("HTTP_X_GOOG_API_KEY") or request.query_params.get("key")
        if key:
            return self.authenticate_credentials(key.strip())
        return super().authenticate(request)


class GeminiKeyScheme(OpenApiAuthenticationExtension):
    """Documents the token where Gemini clients send their key: x-goog-api-key (or ?key=), or Bearer."""

    target_class = GeminiKeyAuthentication
    name = ["geminiApiKey", "geminiBearer"]

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[Any]]]:
        return [{name: []} for name in self.name]  # either one

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, Any]]:
        return [
            {"type": "apiKey", "in": "header", "name": "x-goog-api-key", "description": "A NanoClone API token."},
            {"type": "http", "scheme": "bearer", "description": "A NanoClone API token (no session)."},
        ]


def error_body(status: int, message: str, field: str | None = None, retry_seconds: int | None = None) -> dict[str, Any]:
    """Google's error shape; the offending field and the retry delay in its standard details."""
    error: dict[str, Any] = {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}
    details: list[dict[str, Any]] = []
    if field:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field, "description": message}],
            }
        )
    if retry_seconds:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_seconds}s"})
    if details:
        error["details"] = details
    return {"error": error}


@csrf_exempt  # a POST to an unknown path: the door's JSON 404, not the CSRF failure page
def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Whatever else is under /v1beta/ (or /v1/models): Gemini's 404, never the HTML page."""
    return JsonResponse(error_body(404, f"Method not found: {request.method} {request.path}."), status=404)


# --- OpenAPI: Gemini's shapes, for drf-spectacular (the parts NanoClone reads and writes) -----

GEMINI_ERROR = inline_serializer(
    "GeminiError",
    {
        "error": inline_serializer(
            "GeminiErrorDetail",
            {
                "code": serializers.IntegerField(),
                "message": serializers.CharField(),
                "status": serializers.CharField(),
                "details": serializers.ListField(child=serializers.DictField(), required=False),
            },
        )
    },
)
GENERATE_CONTENT_REQUEST = inline_serializer(
    "GeminiGenerateContentRequest",
    {
        "contents": serializers.ListField(
            child=serializers.DictField(), help_text="Turns: {role: user|model, parts: [{text} | {inlineData}]}."
        ),
        "generationConfig": serializers.DictField(
            required=False, help_text="responseModalities, imageConfig {aspectRatio, imageSize}, thinkingConfig."
        ),
        "tools": serializers.ListField(
            child=serializers.DictField(), required=False, help_text="[{googleSearch: {}}] only."
        ),
    },
)


@extend_schema_serializer(component_name="GeminiGenerateContentResponse")
class GenerateContentResponseSerializer(serializers.Serializer):
    candidates = serializers.ListField(child=serializers.DictField(), required=False)
    promptFeedback = serializers.DictField(required=False)  # Gemini's camelCase names
    usageMetadata = serializers.DictField(required=False)
    modelVersion = serializers.CharField()
    responseId = serializers.CharField()


GEMINI_MODEL = inline_serializer(
    "GeminiModel",
    {
        "name": serializers.CharField(),
        "baseModelId": serializers.CharField(),
        "version": serializers.CharField(),
        "displayName": serializers.CharField(),
        "description": serializers.CharField(),
        "supportedGenerationMethods": serializers.ListField(child=serializers.CharField()),
        "thinking": serializers.BooleanField(),
    },
)
VERSION = OpenApiParameter(
    "version", str, OpenApiParameter.PATH, enum=["v1beta", "v1"], description="Gemini's API version."
)
MODEL = OpenApiParameter("model", str, OpenApiParameter.PATH, description="A model id or alias (GET .../models).")
# What a generating call may answer besides the shared errors: a reused Idempotency-Key (409),
# a cancelled job (499), a spent pool (429, with Retry-After), Gemini unavailable or no key at all (503).
GENERATION_ERRORS = dialects.errors(GEMINI_ERROR, 409, 422, 499, 502, 503)


def failure_status(job: Job) -> tuple[int, int | None]:
    """The HTTP status Gemini would answer a failed job (not a refusal) with, and the seconds until a
    key frees up when that is known."""
    seconds = max(1, int((job.retry_after - job.updated_at).total_seconds())) if job.retry_after else None
    statuses: dict[str, int] = {
        Job.ErrorCode.NO_USABLE_KEY: 429 if seconds else 503,
        Job.ErrorCode.UPSTREAM_ERROR: 503,
        Job.ErrorCode.CANCELLED: 499,
    }
    return statuses.get(job.error_code, job.failure_status), seconds


class GeminiSchema(dialects.DialectSchema):
    tag = "gemini"
    error_serializer = GEMINI_ERROR


class GeminiView(dialects.DialectView):
    schema = GeminiSchema()
    authentication_classes = [GeminiKeyAuthentication]
    no_usable_key_status = 429

    def render_problem(self, problem: dialects.Problem) -> Response:
        status, message = problem.status, problem.message
        retry = problem.headers.get("Retry-After")
        if problem.code == "no_usable_key" and not retry:
            status = 503  # no key will do (none configured, all invalid): not a quota to wait out
        elif problem.code == "unauthenticated":
            message = "Missing API key: send your NanoClone token as x-goog-api-key, ?key= or Authorization: Bearer."
        field = FIELDS.get(problem.param or "", problem.param) if problem.code == "invalid_request" else None
        return Response(error_body(status, message, field, int(retry) if retry else None), status=status)

    def failure(self, job: Job) -> Response:
        """A failed job (not a refusal) as Gemini's error, with Retry-After when a key frees up later."""
        status, seconds = failure_status(job)
        response = Response(error_body(status, job.error, retry_seconds=seconds), status=status)
        if seconds:
            response["Retry-After"] = str(seconds)
        return response


# --- a Gemini request -> GenerationRequest -----------------------------------------------------


def _get(data: dict[str, Any], name: str) -> Any:
    """A field in either spelling: Google's JSON parser takes camelCase and snake_case, and
    google-genai mixes them (thinking_level, inline_data's mime_type)."""
    if name in data:
        return data[name]
    return data.get(_CAMEL.sub(r"_\1", name).lower())


def _object(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise pipeline.InvalidRequest(name, f"{name} must be an object.")
    return value


def _text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise pipeline.InvalidRequest(name, f"{name} must be a string.")
    return value


def _turns(body: dict[str, Any]) -> list[pipeline.EarlierTurn]:
    contents = _get(body, "contents")
    if not isinstance(contents, list) or not contents:
        raise pipeline.InvalidRequest("contents", "contents is required: a list of turns, each {role, parts}.")
    turns = []
    for index, content in enumerate(contents):
        where = f"contents[{index}]"
        content = _object(content, where)
        role = _text(content.get("role"), f"{where}.role") or "user"
        if role not in ("user", "model"):
            raise pipeline.InvalidRequest(where, f"{where}.role must be user or model, not '{role}'.")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise pipeline.InvalidRequest(where, f"{where} has no parts.")
        turn = pipeline.EarlierTurn(role)
        texts = []
        for number, part in enumerate(parts):
            name = f"{where}.parts[{number}]"
            part = _object(part, name)
            if _get(part, "thought") is True:
                continue  # a thought summary: Gemini doesn't want it back
            signature = standard_base64(_text(_get(part, "thoughtSignature"), f"{name}.thoughtSignature"))
            blob = _get(part, "inlineData")
            if "text" in part:
                texts.append(_text(part["text"], f"{name}.text"))
                turn.text_signature = turn.text_signature or signature
            elif isinstance(blob, dict):
                data = _text(blob.get("data"), f"{name}.inlineData.data")
                if not data:
                    raise pipeline.InvalidRequest(name, f"{name}.inlineData has no data.")
                turn.images.append((standard_base64(data), signature))
            else:
                kinds = ", ".join(sorted(key for key in part if key not in ("thoughtSignature", "thought_signature")))
                raise pipeline.InvalidRequest(
                    name, f"{name} holds {kinds or 'nothing'}: NanoClone passes on text and inlineData images only."
                )
        turn.text = "\n".join(texts)
        turns.append(turn)
    if turns[-1].role != "user":
        raise pipeline.InvalidRequest("contents", "The last of contents must be the user's turn (role user).")
    return turns


def _refuse_unsupported(body: dict[str, Any]) -> None:
    for name in ("systemInstruction", "cachedContent"):
        if _get(body, name) is not None:
            raise pipeline.InvalidRequest(
                name, f"{name} is not supported by NanoClone's Gemini image API; put what it says in the prompt."
            )


def _grounding(body: dict[str, Any]) -> bool:
    tools = _get(body, "tools") or []
    if not isinstance(tools, list):
        raise pipeline.InvalidRequest("tools", "tools must be a list.")
    for index, tool in enumerate(tools):
        tool = _object(tool, f"tools[{index}]")
        if not tool or set(tool) - {"googleSearch", "google_search"}:
            raise pipeline.InvalidRequest(
                "tools", f"tools[{index}] ({', '.join(tool) or 'empty'}): NanoClone offers googleSearch only."
            )
    return bool(tools)


def generation_request(
    request: Request, body: Any, model: ImageModel, version: str, method: str
) -> tuple[pipeline.GenerationRequest, bool]:
    """The pipeline's request for a Gemini request body, and whether the answer carries text."""
    body = _object(body, "body")
    _refuse_unsupported(body)
    *earlier, last = _turns(body)
    config = _object(_get(body, "generationConfig"), "generationConfig")
    modalities = _get(config, "responseModalities") or ["TEXT", "IMAGE"]
    if not isinstance(modalities, list) or not all(isinstance(m, str) for m in modalities):
        raise pipeline.InvalidRequest("generationConfig.responseModalities", "responseModalities must be a list.")
    modalities = [m.upper() for m in modalities]
    if "IMAGE" not in modalities:
        raise pipeline.InvalidRequest(
            "generationConfig.responseModalities",
            "NanoClone serves Gemini's image models: responseModalities must include IMAGE.",
        )
    if _get(config, "candidateCount") not in (None, 1):
        raise pipeline.InvalidRequest(
            "generationConfig.candidateCount", "candidateCount must be 1: an image model answers one candidate a call."
        )
    image_config = _object(_get(config, "imageConfig"), "generationConfig.imageConfig")
    thinking = _object(_get(config, "thinkingConfig"), "generationConfig.thinkingConfig")
    level = _text(_get(thinking, "thinkingLevel"), FIELDS["thinking_level"])
    generation = pipeline.GenerationRequest(
        user=dialects.owner(request),
        prompt=last.text,
        model=model.id,
        aspect_ratio=_text(_get(image_config, "aspectRatio"), FIELDS["aspect_ratio"]) or None,
        resolution=_text(_get(image_config, "imageSize"), FIELDS["resolution"]) or None,
        thinking_level=None if level.upper() in ("", "THINKING_LEVEL_UNSPECIFIED") else level,
        grounding=_grounding(body),
        references=[image for image, _ in last.images],
        references_field="contents",
        history=earlier,
        source=SOURCE,
        options={"gemini": {"api_version": version, "method": method}},
        base_url=caller_base_url(request),
        idempotency_key=idempotency_key(request),
    )
    return generation, "TEXT" in modalities


def served_model(name: str, version: str) -> ImageModel:
    """The catalogue model a path names (an alias or an old name too); Gemini's 404 otherwise."""
    model = resolve_model(name.removeprefix("models/"))
    if model is None:
        raise Http404(
            f"models/{name} is not found for API version {version}, or is not supported for generateContent. "
            f"NanoClone serves the image models {', '.join(MODELS)}; GET /{version}/models lists them."
        )
    return model


# --- Job -> Gemini's answer --------------------------------------------------------------------


def _signed(part: dict[str, Any], signature: str) -> dict[str, Any]:
    return {**part, "thoughtSignature": signature} if signature else part


def _usage(message: Message) -> dict[str, int]:
    counts = {
        "promptTokenCount": message.prompt_tokens,
        "candidatesTokenCount": message.output_tokens,
        "totalTokenCount": message.total_tokens,
    }
    return {name: count for name, count in counts.items() if count is not None}


def _grounding_metadata(grounding: dict[str, Any]) -> dict[str, Any]:
    return {
        "webSearchQueries": grounding.get("queries", []),
        "groundingChunks": [{"web": source} for source in grounding.get("sources", [])],
    }


def answer(job: Job, with_text: bool = True) -> dict[str, Any]:
    """Gemini's GenerateContentResponse for a finished job (succeeded, or refused by Gemini)."""
    envelope = {"modelVersion": job.model, "responseId": job.id.hex}
    # A refusal in Google's own words where Gemini gave them (job.refusal), else the nearest of its own.
    refusal = job.refusal or {}
    if "blockReason" in refusal or (job.error_code == Job.ErrorCode.BLOCKED and "finishReason" not in refusal):
        feedback = {"blockReason": refusal.get("blockReason", "OTHER"), "blockReasonMessage": job.error}
        return {"promptFeedback": feedback, **envelope}
    if job.error_code in REFUSALS:
        nearest = "IMAGE_SAFETY" if job.error_code == Job.ErrorCode.IMAGE_SAFETY else "NO_IMAGE"
        reason, said = refusal.get("finishReason") or nearest, refusal.get("message") or job.error
        return {"candidates": [{"finishReason": reason, "finishMessage": said, "index": 0}], **envelope}
    message = job.assistant_message
    assert message is not None  # a succeeded job has its answer
    parts = []
    if with_text and message.text:
        parts.append(_signed({"text": message.text}, message.thought_signature))
    for image in pipeline.output_images(job):
        inline = {"mimeType": image.mime_type, "data": image.base64()}
        parts.append(_signed({"inlineData": inline}, image.thought_signature))
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
    if message.grounding:
        candidate["groundingMetadata"] = _grounding_metadata(message.grounding)
    return {"candidates": [candidate], "usageMetadata": _usage(message), **envelope}


def stream_chunks(whole: dict[str, Any]) -> list[dict[str, Any]]:
    """The answer as Gemini streams it: one part a chunk, finishReason and grounding on the last."""
    candidates = whole.get("candidates") or []
    parts = candidates[0].get("content", {}).get("parts", []) if candidates else []
    if len(parts) < 2:
        return [whole]
    candidate = candidates[0]
    chunks = []
    for number, part in enumerate(parts):
        piece: dict[str, Any] = {"content": {"role": "model", "parts": [part]}, "index": 0}
        if number == len(parts) - 1:
            piece.update({key: value for key, value in candidate.items() if key not in ("content", "index")})
        chunks.append({**whole, "candidates": [piece]})
    return chunks


# --- views -------------------------------------------------------------------------------------


class GenerateContentView(GeminiView):
    method = "generateContent"

    @extend_schema(
        parameters=[VERSION, MODEL],
        request=GENERATE_CONTENT_REQUEST,
        responses={200: GenerateContentResponseSerializer, **GENERATION_ERRORS},
        summary="Gemini: generateContent",
        operation_id="gemini_generate_content",
    )
    def post(self, request: Request, version: str, model: str) -> HttpResponse:
        generation, with_text = generation_request(
            request, request.data, served_model(model, version), version, self.method
        )
        # Like Gemini, a request no key can serve is refused at once, not recorded as a failed job.
        job = pipeline.start(generation, pipeline.RunMode.INLINE, require_usable_key=True)
        if job.state != Job.State.SUCCEEDED and job.error_code not in REFUSALS:
            return self.failure(job)
        return self.render_answer(request, answer(job, with_text))

    def render_answer(self, request: Request, body: dict[str, Any]) -> HttpResponse:
        return Response(body)


class StreamGenerateContentView(GenerateContentView):
    """Gemini's stream, sent once the job is done: an error before it still gets its own status,
    as Gemini's does, and the chunks (text, then the image) arrive together."""

    method = "streamGenerateContent"

    @extend_schema(
        parameters=[
            VERSION,
            MODEL,
            OpenApiParameter("alt", str, description="sse: server-sent events; otherwise one JSON array of chunks."),
        ],
        request=GENERATE_CONTENT_REQUEST,
        responses={
            (200, "application/json"): GenerateContentResponseSerializer(many=True),
            (200, "text/event-stream"): OpenApiTypes.STR,
            **GENERATION_ERRORS,
        },
        summary="Gemini: streamGenerateContent",
        operation_id="gemini_stream_generate_content",
    )
    def post(self, request: Request, version: str, model: str) -> HttpResponse:
        return super().post(request, version, model)

    def render_answer(self, request: Request, body: dict[str, Any]) -> HttpResponse:
        chunks = stream_chunks(body)
        if request.query_params.get("alt") == "sse":
            # orjson, as every DRF answer (nanoclone.api.renderers): the chunks carry the images' base64.
            events = b"".join(b"data: " + orjson.dumps(chunk) + b"\r\n\r\n" for chunk in chunks)
            return HttpResponse(events, content_type="text/event-stream")
        return HttpResponse(orjson.dumps(chunks), content_type="application/json")  # without alt=sse: an array


def model_resource(model: ImageModel) -> dict[str, Any]:
    """A catalogue model as Gemini's models.get describes one."""
    return {
        "name": f"models/{model.id}",
        "baseModelId": model.id,
        "version": "001",
        "displayName": model.label,
        "description": f"{model.label}: {model.status}. Served by NanoClone through its key pool.",
        "supportedGenerationMethods": ["generateContent", "streamGenerateContent"],
        "thinking": bool(model.thinking_levels),
    }


class ModelsView(GeminiView):
    @extend_schema(
        parameters=[VERSION],
        responses={200: inline_serializer("GeminiModelList", {"models": serializers.ListField(child=GEMINI_MODEL)})},
        summary="Gemini: models.list",
        operation_id="gemini_models_list",
    )
    def get(self, request: Request, version: str) -> Response:
        return Response({"models": [model_resource(model) for model in MODELS.values()]})


class ModelView(GeminiView):
    @extend_schema(
        parameters=[VERSION, MODEL],
        responses={200: GEMINI_MODEL},
        summary="Gemini: models.get",
        operation_id="gemini_models_get",
    )
    def get(self, request: Request, version: str, model: str) -> Response:
        return Response(model_resource(served_model(model, version)))
