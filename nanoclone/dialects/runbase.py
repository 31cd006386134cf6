"""Runbase's Nano Banana dialect: POST /api/v1/runs, GET /api/v1/runs/{id}.

Status mapping: pending -> queued, running -> running (but a run waiting in a Gemini batch,
priority "batch", is queued), succeeded -> succeeded (output.urls),
failed -> failed (error), cancelled -> canceled. Errors, whatever the status, are
{"error": {"status", "code", "message"[, "param"]}}; 402 means no Gemini key can serve a run.
"""

from __future__ import annotations

from typing import Any

from django.http import Http404
from drf_spectacular.utils import extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from conversations import pipeline
from conversations.models import Job
from nanoclone.api.envelope import StrictCharField, idempotency_key, timestamp
from nanoclone.api.image_serializers import caller_base_url
from nanoclone.dialects import base as dialects

SOURCE = "runbase"
ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9", "auto")
RESOLUTIONS = ("1K", "2K", "4K")
STATUS = {
    Job.State.PENDING: "queued",
    Job.State.RUNNING: "running",
    Job.State.SUCCEEDED: "succeeded",
    Job.State.FAILED: "failed",
    Job.State.CANCELLED: "canceled",
}
ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    402: "insufficient_credits",
    403: "forbidden",
    404: "not_found",
    429: "rate_limited",
    500: "internal_error",
}


def _choice(choices: tuple[str, ...], name: str) -> serializers.ChoiceField:
    message = f"'{{input}}' is not a supported {name}; use one of {', '.join(choices)}."
    return serializers.ChoiceField(choices=choices, required=False, error_messages={"invalid_choice": message})


@extend_schema_serializer(component_name="RunbaseInput")
class InputSerializer(serializers.Serializer):
    prompt = StrictCharField(allow_blank=True)
    aspect_ratio = _choice(ASPECT_RATIOS, "aspect_ratio")
    resolution = _choice(RESOLUTIONS, "resolution")
    image_urls = serializers.ListField(child=StrictCharField(), required=False, default=list)


@extend_schema_serializer(component_name="RunbaseRunRequest")
class RunSerializer(serializers.Serializer):
    model = StrictCharField(max_length=80)
    input = InputSerializer()
    # Not in Runbase's document: the Batch API's price (dialects.PRIORITIES), beside model and input.
    priority = _choice(dialects.PRIORITIES, "priority")
    batch_fallback = serializers.BooleanField(required=False, default=False)


def run_object(job: Job, request: Request) -> dict[str, Any]:
    succeeded = job.state == Job.State.SUCCEEDED
    failed = job.state in (Job.State.FAILED, Job.State.CANCELLED)
    return {
        "id": str(job.id),
        "model": job.options.get("model", job.model),
        "status": STATUS[dialects.shown_state(job)],
        "input": job.options.get("input", {}),
        "output": {"urls": dialects.output_urls(job, request)} if succeeded else None,
        "error": {"code": job.error_code or "failed", "message": job.error} if failed else None,
        "created_at": timestamp(job.created_at),
        "started_at": timestamp(job.started_at),
        "completed_at": timestamp(job.finished_at),
    }


# --- OpenAPI: Runbase's shapes, for drf-spectacular ----------------------------------------

RUNBASE_ERROR = inline_serializer(
    "RunbaseError",
    {
        "error": inline_serializer(
            "RunbaseErrorDetail",
            {
                "status": serializers.IntegerField(),
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "param": serializers.CharField(required=False),
            },
        )
    },
)
RUNBASE_RUN = inline_serializer(
    "RunbaseRun",
    {
        "id": serializers.UUIDField(),
        "model": serializers.CharField(),
        "status": serializers.ChoiceField(sorted(set(STATUS.values()))),
        "input": serializers.DictField(help_text="The run's input as it was sent (data: URIs shortened)."),
        "output": inline_serializer(
            "RunbaseOutput", {"urls": serializers.ListField(child=serializers.URLField())}, allow_null=True
        ),
        "error": inline_serializer(
            "RunbaseRunError",
            {"code": serializers.CharField(), "message": serializers.CharField(allow_blank=True)},
            allow_null=True,
        ),
        "created_at": serializers.CharField(),
        "started_at": serializers.CharField(allow_null=True),
        "completed_at": serializers.CharField(allow_null=True),
    },
)


class RunbaseSchema(dialects.DialectSchema):
    tag = "runbase"
    error_serializer = RUNBASE_ERROR


class RunbaseView(dialects.DialectView):
    schema = RunbaseSchema()
    no_usable_key_status = 402  # Runbase's "not enough credit": no key has quota left

    def render_problem(self, problem: dialects.Problem) -> Response:
        error: dict[str, Any] = {
            "status": problem.status,
            "code": ERROR_CODES.get(problem.status, problem.code),
            "message": problem.message,
        }
        if problem.param:
            error["param"] = problem.param
        return Response({"error": error}, status=problem.status)


class RunsView(RunbaseView):
    @extend_schema(
        request=RunSerializer,
        responses={201: RUNBASE_RUN, **dialects.errors(RUNBASE_ERROR, 402, 409)},
        summary="Runbase: start a run",
    )
    def post(self, request: Request) -> Response:
        body = RunSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = body.validated_data
        given = values["input"]
        job = pipeline.start(
            pipeline.GenerationRequest(
                user=dialects.owner(request),
                prompt=given["prompt"],
                model=values["model"],
                aspect_ratio=given.get("aspect_ratio"),
                resolution=given.get("resolution"),
                references=given["image_urls"],
                references_field="input.image_urls",
                source=SOURCE,
                options={"model": values["model"], "input": dialects.shown_request(dict(given))},
                base_url=caller_base_url(request),
                idempotency_key=idempotency_key(request),
                **dialects.batch_price(values),
            ),
            pipeline.RunMode.QUEUE,
        )
        return Response(run_object(job, request), status=201)


class RunView(RunbaseView):
    @extend_schema(responses={200: RUNBASE_RUN}, summary="Runbase: a run's status and output")
    def get(self, request: Request, run_id: str) -> Response:
        job = dialects.find_job(dialects.caller_jobs(request, SOURCE), run_id)
        if job is None:
            raise Http404(f"Run '{run_id}' was not found.")
        return Response(run_object(job, request))
