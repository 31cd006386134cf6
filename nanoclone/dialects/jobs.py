"""The async jobs dialect (reference-apis/gemini-jobs-api.md): /api/images/generate, status, result.

A door: it translates the document's request into one GenerationRequest (size -> aspect ratio,
resolution and exact output pixels; format -> output conversion; style and quality -> prompt
guidance and resolution), queues it on the cluster, and maps the Job back to the document's
statuses, shapes and French messages. It also sends the document's global webhook.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db.models import Sum
from django.dispatch import receiver
from django.http import Http404
from django.http.response import HttpResponseBase
from django.utils import translation
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView, exception_handler

from conversations import pipeline, safe_fetch, webhooks
from conversations.models import Job
from conversations.signals import job_finished, job_progress
from gallery.models import Image
from keys import pool
from keys.catalogue import ImageModel, resolve_model
from nanoclone.api.envelope import (
    DatabaseUnavailable,
    StrictCharField,
    as_api_error,
    first_error,
    idempotency_key,
    owner,
    timestamp,
)
from nanoclone.api.image_serializers import absolute, caller_base_url
from nanoclone.api.parsers import BodyTooLarge
from nanoclone.api.schema import DocumentedErrors
from nanoclone.dialects import base as dialects

log = logging.getLogger(__name__)

SOURCE = "jobs"
JOB_ID_PREFIX = "img_"

SIZES = ("512x512", "1024x1024", "1792x1024")
FORMATS = ("PNG", "JPEG", "WEBP")
STYLE_GUIDANCE = {
    "photorealistic": "Photorealistic photograph: natural lighting, true-to-life textures and proportions.",
    "artistic": "Artistic interpretation: painterly, expressive brushwork, bold composition and colour.",
    "illustration": "Digital illustration: clean lines, flat shading, vivid colours.",
    "3d-render": "3D render: physically based materials, soft studio lighting, subtle depth of field.",
}
QUALITY_GUIDANCE = {
    "standard": "",
    "high": "High detail, sharp focus.",
    "ultra": "Ultra-detailed, maximum fidelity, fine textures.",
}
# Gemini resolutions above the smallest one that covers the asked pixels: more pixels to
# downscale from gives a sharper image (and costs more on the Pro model at 4K).
QUALITY_STEPS = {"standard": 0, "high": 1, "ultra": 2}

MESSAGES = {
    "PENDING": "En attente de démarrage",
    "INITIALIZING": "Initialisation du modèle Gemini...",
    "GENERATING": "Génération en cours...",
    "SAVING": "Sauvegarde des images...",
    "FAILED": "Échec de la génération",
}
NOT_FOUND = "Tâche introuvable"
PROMPT_REQUIRED = "Prompt requis"
NUM_IMAGES_RANGE = f"num_images doit être entre 1 et {pipeline.MAX_IMAGES_PER_JOB}"
NOT_A_STRING = "Chaîne de caractères attendue, reçu : {type}"
TOO_LARGE = "Corps de la requête trop volumineux (NANOCLONE_MAX_REQUEST_BYTES)"
INVALID_TOKEN = "Jeton d'API invalide : envoyez « Authorization: Bearer <jeton> »"
NOT_JSON = "Le corps de la requête n'est pas du JSON valide"
DATABASE_UNAVAILABLE = "Base de données occupée ou injoignable ; réessayez dans quelques secondes"


# --- request -> GenerationRequest ---------------------------------------------------------


def _text(**kwargs: Any) -> StrictCharField:
    messages = {"not_a_string": NOT_A_STRING, **kwargs.pop("error_messages", {})}
    return StrictCharField(error_messages=messages, **kwargs)


def _choice(name: str, choices: tuple[str, ...] | list[str]) -> serializers.ChoiceField:
    return serializers.ChoiceField(
        choices=list(choices),
        required=False,
        error_messages={"invalid_choice": f"{name} invalide : « {{input}} ». Valeurs acceptées : {', '.join(choices)}"},
    )


class JobRequestSerializer(serializers.Serializer):
    prompt = _text(
        max_length=settings.MAX_PROMPT_CHARS,
        error_messages={"required": PROMPT_REQUIRED, "blank": PROMPT_REQUIRED, "null": PROMPT_REQUIRED},
    )
    input_image_url = _text(required=False, allow_blank=True, allow_null=True, trim_whitespace=True)
    num_images = serializers.IntegerField(
        required=False,
        default=1,
        min_value=1,
        max_value=pipeline.MAX_IMAGES_PER_JOB,
        error_messages={
            key: NUM_IMAGES_RANGE for key in ("invalid", "min_value", "max_value", "null", "max_string_length")
        },
    )
    size = _choice("size", SIZES)
    format = _choice("format", FORMATS)
    # The document's name; DRF's metaclass pops declared fields, so Field.style is not shadowed.
    style = _choice("style", list(STYLE_GUIDANCE))  # type: ignore[assignment]
    quality = _choice("quality", list(QUALITY_GUIDANCE))
    # Not in the document: lets a client pick another model; defaults to NanoClone's.
    model = _text(required=False, allow_blank=True)
    # Not in the document: "batch" waits for Gemini's Batch API, at half the price (docs: Batch
    # price); with batch_fallback, a batch Gemini didn't finish is made online instead of failing.
    priority = _choice("priority", dialects.PRIORITIES)
    batch_fallback = serializers.BooleanField(required=False, default=False)

    def to_internal_value(self, data: Any) -> Any:
        # The document's values are upper case for format and lower case for the rest;
        # accept any case (and JPG) rather than fail a client over it.
        if isinstance(data, dict):
            data = dict(data)
            for name, fold in (
                ("format", str.upper),
                ("size", str.lower),
                ("style", str.lower),
                ("quality", str.lower),
            ):
                if isinstance(data.get(name), str):
                    data[name] = fold(data[name].strip())
            if data.get("format") == "JPG":
                data["format"] = "JPEG"
        return super().to_internal_value(data)


def generation_plan(model: ImageModel, size: str, quality: str) -> tuple[str, str]:
    """(aspect ratio, Gemini resolution) for an asked size and quality."""
    width, height = (int(part) for part in size.split("x"))
    ratio = model.nearest_ratio(width, height)
    covering = [
        index
        for index, resolution in enumerate(model.resolutions)
        if all(have >= want for have, want in zip(model.pixel_size(ratio, resolution), (width, height), strict=True))
    ]
    start = covering[0] if covering else len(model.resolutions) - 1
    index = min(start + QUALITY_STEPS[quality], len(model.resolutions) - 1)
    return ratio, model.resolutions[index]


def guided_prompt(prompt: str, style: str, quality: str) -> str:
    guidance = " ".join(part for part in (STYLE_GUIDANCE[style], QUALITY_GUIDANCE[quality]) if part)
    return f"{prompt}\n\nStyle: {guidance}"


def generation_request(request: Request, values: dict[str, Any]) -> pipeline.GenerationRequest:
    model = resolve_model(values.get("model"))
    if model is None:
        raise pipeline.InvalidRequest("model", f"Modèle inconnu : « {values.get('model')} »")
    size = values.get("size") or "1024x1024"
    output_format = values.get("format") or "PNG"
    style = values.get("style") or "photorealistic"
    quality = values.get("quality") or "high"
    ratio, resolution = generation_plan(model, size, quality)
    width, height = (int(part) for part in size.split("x"))
    url = values.get("input_image_url") or ""
    return pipeline.GenerationRequest(
        **dialects.batch_price(values),
        user=owner(request),
        prompt=guided_prompt(values["prompt"].strip(), style, quality),
        model=model.id,
        aspect_ratio=ratio,
        resolution=resolution,
        references=[url] if url else [],
        references_field="input_image_url",
        num_images=values["num_images"],
        source=SOURCE,
        options={
            "output": {"width": width, "height": height, "format": output_format},
            "jobs": {
                "prompt": values["prompt"].strip(),
                "size": size,
                "format": output_format,
                "style": style,
                "quality": quality,
                "input_image_url": url[:2048] if not url.startswith("data:") else "data:",
            },
        },
        base_url=caller_base_url(request),
        idempotency_key=idempotency_key(request),
    )


# --- Job -> the document's shapes -----------------------------------------------------------


def job_id_of(job: Job) -> str:
    return f"{JOB_ID_PREFIX}{job.id.hex}"


def status_of(job: Job) -> str:
    if job.state == Job.State.PENDING:
        return "PENDING"
    if job.state == Job.State.SUCCEEDED:
        return "COMPLETED"
    if job.state in (Job.State.FAILED, Job.State.CANCELLED):
        return "FAILED"
    running: dict[str, str] = {
        Job.Phase.BATCHED: "PENDING",  # waiting in a Gemini batch
        Job.Phase.GENERATING: "GENERATING",
        Job.Phase.SAVING: "SAVING",
    }
    return running.get(job.phase, "INITIALIZING")


def message_of(job: Job, job_status: str) -> str:
    if job_status == "COMPLETED":
        return f"{len(pipeline.output_images(job))} image(s) générée(s) avec succès"
    if job_status == "GENERATING":
        done = Image.objects.filter(job=job, role=Image.Role.OUTPUT).count()
        return f"{MESSAGES['GENERATING']} ({done}/{job.num_images} images)"
    return MESSAGES[job_status]


def status_body(job: Job) -> dict[str, Any]:
    job_status = status_of(job)
    body: dict[str, Any] = {
        "job_id": job_id_of(job),
        "status": job_status,
        "message": message_of(job, job_status),
        "progress": job.progress,
        "created_at": timestamp(job.created_at),
        "updated_at": timestamp(job.updated_at),
    }
    if job_status == "FAILED":
        body["errors"] = [job.error]
    return body


def images_body(job: Job, request: Request | None = None) -> list[dict[str, Any]]:
    description = job.options.get("jobs", {}).get("prompt", job.prompt)
    return [
        {
            "file_path": image.file,
            # Signed: the document's clients download without credentials.
            "url": absolute(request, image.signed_url(), job),
            "description": description,
            "format": image.format,
            "size_bytes": image.bytes,
            "dimensions": image.dimensions,
        }
        for image in pipeline.output_images(job)
    ]


def metadata_body(job: Job) -> dict[str, Any]:
    answer = job.assistant_message
    duration = job.duration_seconds
    return {
        "model_name": job.model,
        "version": "latest",
        "generation_time_seconds": round(duration, 2) if duration is not None else None,
        "input_tokens": (answer.prompt_tokens if answer else None) or 0,
        "output_size_bytes": Image.objects.filter(job=job, role=Image.Role.OUTPUT).aggregate(total=Sum("bytes"))[
            "total"
        ]
        or 0,
        "timestamp": timestamp(job.finished_at),
    }


def result_body(job: Job, request: Request) -> dict[str, Any]:
    body = status_body(job)
    if body["status"] == "COMPLETED":
        return {
            "job_id": body["job_id"],
            "status": "COMPLETED",
            "message": body["message"],
            "images": images_body(job, request),
            "metadata": metadata_body(job),
        }
    if body["status"] == "FAILED":
        return {"job_id": body["job_id"], "status": "FAILED", "message": body["message"], "errors": body["errors"]}
    return {key: body[key] for key in ("job_id", "status", "message", "progress")}


# --- views ------------------------------------------------------------------------------------


def _error(message: str, status_code: int, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    return Response({"detail": message, "message": message, **extra}, status=status_code, headers=headers)


def jobs_exception_handler(error: Exception, context: dict[str, Any]) -> Response | None:
    """The document's errors: {"detail", "message"} (FastAPI-style), never the native envelope."""
    error = as_api_error(error)
    if isinstance(error, pipeline.InvalidRequest):
        message = error.message
        if error.field == "input_image_url":  # the document's words
            message = f"input_image_url invalide : {message}"
        return _error(message, error.status, headers=error.headers or None, field=error.field)
    if isinstance(error, Http404):
        return _error(NOT_FOUND, 404)
    if isinstance(error, pool.NoUsableKey):
        seconds = error.retry_after_seconds
        return _error(error.message, 503, headers={"Retry-After": str(seconds)} if seconds else None)
    response = exception_handler(error, context)
    if response is None:
        return None
    if isinstance(error, exceptions.ValidationError):
        field, message = first_error(error.detail)
        return _error(message, 400, field=field or None)
    headers = {k: v for k, v in response.items() if k in ("WWW-Authenticate", "Retry-After", "Allow")}
    # DRF's own messages are French already (JobsView.dispatch); these are NanoClone's or untranslated.
    message = str(getattr(error, "detail", error))
    if isinstance(error, BodyTooLarge):
        message = TOO_LARGE
    elif isinstance(error, exceptions.AuthenticationFailed):
        message = INVALID_TOKEN
    elif isinstance(error, exceptions.ParseError):
        message = NOT_JSON
    elif isinstance(error, DatabaseUnavailable):
        message = DATABASE_UNAVAILABLE
    return _error(message, response.status_code, headers=headers)


# --- OpenAPI: the document's shapes, for drf-spectacular ------------------------------------

JOBS_ERROR = inline_serializer(
    "JobsError",
    {
        "detail": serializers.CharField(),
        "message": serializers.CharField(help_text="The same text as detail, in French."),
        "field": serializers.CharField(required=False, allow_null=True, help_text="The offending field, if any."),
    },
)
JOB_ACCEPTED = inline_serializer(
    "JobAccepted",
    {"job_id": serializers.CharField(), "status": serializers.CharField(), "message": serializers.CharField()},
)
JOB_IMAGE = inline_serializer(
    "JobImage",
    {
        "file_path": serializers.CharField(),
        "url": serializers.URLField(),
        "description": serializers.CharField(),
        "format": serializers.CharField(),
        "size_bytes": serializers.IntegerField(),
        "dimensions": serializers.CharField(),
    },
)
METADATA_FIELDS: dict[str, serializers.Field] = {
    "model_name": serializers.CharField(),
    "version": serializers.CharField(),
    "generation_time_seconds": serializers.FloatField(allow_null=True),
    "input_tokens": serializers.IntegerField(),
    "output_size_bytes": serializers.IntegerField(allow_null=True),
    "timestamp": serializers.CharField(allow_null=True),
}
JOB_STATUS = inline_serializer(
    "JobStatus",
    {
        "job_id": serializers.CharField(),
        "status": serializers.ChoiceField(["PENDING", "INITIALIZING", "GENERATING", "SAVING", "COMPLETED", "FAILED"]),
        "message": serializers.CharField(),
        "progress": serializers.IntegerField(),
        "created_at": serializers.CharField(),
        "updated_at": serializers.CharField(),
        "errors": serializers.ListField(child=serializers.CharField(), required=False),
    },
)
JOB_RESULT = inline_serializer(
    "JobResult",
    {
        "job_id": serializers.CharField(),
        "status": serializers.CharField(),
        "message": serializers.CharField(),
        "progress": serializers.IntegerField(required=False),
        "images": serializers.ListField(child=JOB_IMAGE, required=False),
        "metadata": inline_serializer("JobMetadata", METADATA_FIELDS, required=False),
        "errors": serializers.ListField(child=serializers.CharField(), required=False),
    },
)


class JobsSchema(DocumentedErrors):
    error_serializer = JOBS_ERROR


class JobsView(APIView):
    schema = JobsSchema()

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> HttpResponseBase:
        # The document is French, and DRF ships French: its messages (415, 405, 401, "this field
        # may not be null", ...) are made in French while the request runs, like the document's own.
        with translation.override("fr"):
            return super().dispatch(request, *args, **kwargs)

    def get_exception_handler(self) -> Callable[[Exception, dict[str, Any]], Response | None]:
        return jobs_exception_handler

    def job(self, job_id: str) -> Job:
        jobs = dialects.caller_jobs(self.request, SOURCE).select_related("assistant_message", "user_message")
        found = dialects.find_job(jobs, job_id.removeprefix(JOB_ID_PREFIX))
        if found is None:
            raise Http404
        return found


class GenerateJobView(JobsView):
    """Start a generation job; poll /api/images/status/<job_id>, then fetch /api/images/result/<job_id>."""

    serializer_class = JobRequestSerializer

    @extend_schema(request=JobRequestSerializer, responses={202: JOB_ACCEPTED, 429: JOBS_ERROR, 503: JOBS_ERROR})
    def post(self, request: Request) -> Response:
        body = JobRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        job = pipeline.start(generation_request(request, body.validated_data), pipeline.RunMode.QUEUE)
        return Response(
            {
                "job_id": job_id_of(job),
                "status": "PENDING",
                "message": "Tâche de génération d'images créée avec succès",
            },
            status=status.HTTP_202_ACCEPTED,
        )


class JobStatusView(JobsView):
    @extend_schema(responses={200: JOB_STATUS})
    def get(self, request: Request, job_id: str) -> Response:
        return Response(status_body(self.job(job_id)))


class JobResultView(JobsView):
    @extend_schema(responses={200: JOB_RESULT, 202: JOB_RESULT})
    def get(self, request: Request, job_id: str) -> Response:
        job = self.job(job_id)
        body = result_body(job, request)
        # Not finished yet: the request is fine, the result isn't there.
        return Response(body, status=status.HTTP_200_OK if job.finished else status.HTTP_202_ACCEPTED)


# --- the document's global webhook ------------------------------------------------------------


def _webhook_wanted(job: Job) -> bool:
    return job.source == SOURCE and settings.WEBHOOK_ENABLED and bool(settings.WEBHOOK_URL)


def webhook_payload(job: Job) -> tuple[str, dict[str, Any]]:
    """(event, payload) in the document's webhook format for the job as it is now."""
    job_status = status_of(job)
    now = timestamp(dt.datetime.now(dt.UTC))
    if job_status == "COMPLETED":
        return "job.completed", {
            "job_id": job_id_of(job),
            "status": "completed",
            "timestamp": now,
            "environment": settings.WEBHOOK_ENVIRONMENT,
            "data": {
                "job_id": job_id_of(job),
                "images": images_body(job),
                "metadata": metadata_body(job),
                "status": "COMPLETED",
                "generated_at": timestamp(job.finished_at),
            },
        }
    if job_status == "FAILED":
        return "job.failed", {
            "job_id": job_id_of(job),
            "status": "failed",
            "timestamp": now,
            "environment": settings.WEBHOOK_ENVIRONMENT,
            "error_message": job.error,
            "message": "Échec de la génération d'images",
        }
    return "job.progress", {
        "job_id": job_id_of(job),
        "status": job_status.lower(),
        "timestamp": now,
        "progress": job.progress,
        "message": message_of(job, job_status),
    }


@receiver(job_progress, dispatch_uid="jobs_api.progress_webhook")
@receiver(job_finished, dispatch_uid="jobs_api.finished_webhook")
def send_webhook(sender: Any, job: Job, **kwargs: Any) -> None:
    # The pipeline sends one progress signal per phase change and per stored image: no flood.
    if not _webhook_wanted(job):
        return
    event, payload = webhook_payload(job)
    try:
        webhooks.send(settings.WEBHOOK_URL, payload, event=event, job=job, secret=settings.WEBHOOK_SECRET)
    except safe_fetch.UnsafeURLError as refused:
        log.error("WEBHOOK_URL refused, no webhook sent for job %s: %s", job_id_of(job), refused)
