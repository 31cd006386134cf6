"""evolink's Nano Banana dialect: POST /v1/images/generations, GET /v1/tasks/{id}, callbacks.

Status mapping (evolink has four statuses): pending -> pending, running -> processing (but a task
waiting in a Gemini batch, priority "batch", is pending), succeeded -> completed, failed and
cancelled -> failed (a cancelled task carries error.code "task_cancelled"). Callbacks post the
task query body when a task completes, fails or is cancelled, through the one webhook delivery
(10 s timeout, retries after 1/2/4 s).
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import receiver
from django.http import Http404
from drf_spectacular.utils import extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from conversations import pipeline, safe_fetch, webhooks
from conversations.models import Job
from conversations.signals import job_finished
from nanoclone.api.envelope import StrictCharField, idempotency_key
from nanoclone.api.image_serializers import caller_base_url
from nanoclone.dialects import base as dialects

log = logging.getLogger(__name__)

SOURCE = "evolink"
SIZES = ("auto", "1:1", "2:3", "3:2", "4:3", "3:4", "16:9", "9:16")
ESTIMATED_SECONDS = 45
# NanoClone bills nothing; the block is kept because evolink clients read it.
USAGE = {"billing_rule": "per_call", "credits_reserved": 0, "user_group": "default"}
STATUS = {
    Job.State.PENDING: "pending",
    Job.State.RUNNING: "processing",
    Job.State.SUCCEEDED: "completed",
    Job.State.FAILED: "failed",
    Job.State.CANCELLED: "failed",
}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
}


@extend_schema_serializer(component_name="EvolinkGenerationRequest")
class GenerationSerializer(serializers.Serializer):
    model = StrictCharField(required=False, default="gemini-2.5-flash-image", max_length=80)
    prompt = StrictCharField(allow_blank=True)
    size = serializers.ChoiceField(
        choices=SIZES,
        required=False,
        default="auto",
        error_messages={"invalid_choice": f"'{{input}}' is not a supported size; use one of {', '.join(SIZES)}."},
    )
    image_urls = serializers.ListField(child=StrictCharField(), required=False, default=list)
    callback_url = StrictCharField(required=False, allow_blank=True, default="")
    # Not in evolink's document: the Batch API's price (dialects.PRIORITIES).
    priority = serializers.ChoiceField(
        choices=dialects.PRIORITIES,
        required=False,
        error_messages={
            "invalid_choice": f"'{{input}}' is not a supported priority; use one of {', '.join(dialects.PRIORITIES)}."
        },
    )
    batch_fallback = serializers.BooleanField(required=False, default=False)


def task_id(job: Job) -> str:
    return f"task-unified-{int(job.created_at.timestamp())}-{job.id.hex}"


def task_object(job: Job, request: Request | None = None) -> dict[str, Any]:
    """The task as evolink's creation, query and callback bodies show it."""
    task: dict[str, Any] = {
        "created": int(job.created_at.timestamp()),
        "id": task_id(job),
        "model": job.model,  # "the model actually used"
        "object": "image.generation.task",
        "progress": job.progress,
        "status": STATUS[dialects.shown_state(job)],
        "task_info": {"can_cancel": dialects.shown_state(job) == Job.State.PENDING},
        "type": "image",
        "usage": USAGE,
    }
    if not job.finished:
        task["task_info"]["estimated_time"] = ESTIMATED_SECONDS
    if job.state == Job.State.SUCCEEDED:
        task["results"] = dialects.output_urls(job, request)
    elif job.state == Job.State.CANCELLED:
        task["error"] = {"code": "task_cancelled", "message": job.error or "The task was cancelled."}
    elif job.state == Job.State.FAILED:
        task["error"] = {"code": job.error_code or "failed", "message": job.error}
    return dict(sorted(task.items()))


def find_task(request: Request, task: str) -> Job:
    job = dialects.find_job(dialects.caller_jobs(request, SOURCE), task.rsplit("-", 1)[-1])
    if job is None or task_id(job) != task:
        raise Http404(f"Task '{task}' was not found.")
    return job


# --- OpenAPI: evolink's shapes, for drf-spectacular ----------------------------------------

EVOLINK_ERROR = inline_serializer(
    "EvolinkError",
    {
        "error": inline_serializer(
            "EvolinkErrorDetail",
            {
                "code": serializers.IntegerField(),
                "message": serializers.CharField(),
                "type": serializers.CharField(),
                "param": serializers.CharField(required=False),
            },
        )
    },
)
EVOLINK_TASK = inline_serializer(
    "EvolinkTask",
    {
        "created": serializers.IntegerField(),
        "id": serializers.CharField(),
        "model": serializers.CharField(allow_blank=True),
        "object": serializers.CharField(),
        "progress": serializers.IntegerField(min_value=0, max_value=100),
        "status": serializers.ChoiceField(sorted(set(STATUS.values()))),
        "task_info": inline_serializer(
            "EvolinkTaskInfo",
            {"can_cancel": serializers.BooleanField(), "estimated_time": serializers.IntegerField(required=False)},
        ),
        "type": serializers.CharField(),
        "usage": inline_serializer(
            "EvolinkUsage",
            {
                "billing_rule": serializers.CharField(),
                "credits_reserved": serializers.IntegerField(),
                "user_group": serializers.CharField(),
            },
        ),
        "results": serializers.ListField(child=serializers.URLField(), required=False),
        "error": inline_serializer(  # a failed or cancelled task's
            "EvolinkTaskError",
            {"code": serializers.CharField(), "message": serializers.CharField(allow_blank=True)},
            required=False,
        ),
    },
)


class EvolinkSchema(dialects.DialectSchema):
    tag = "evolink"
    error_serializer = EVOLINK_ERROR


class EvolinkView(dialects.DialectView):
    schema = EvolinkSchema()

    def render_problem(self, problem: dialects.Problem) -> Response:
        error: dict[str, Any] = {
            "code": problem.status,
            "message": problem.message,
            "type": ERROR_TYPES.get(
                problem.status, "invalid_request_error" if problem.status < 500 else "internal_server_error"
            ),
        }
        if problem.param:
            error["param"] = problem.param
        return Response({"error": error}, status=problem.status)


class GenerationsView(EvolinkView):
    @extend_schema(
        request=GenerationSerializer,
        responses={200: EVOLINK_TASK, **dialects.errors(EVOLINK_ERROR, 409, 503)},
        summary="evolink: create an image generation task",
    )
    def post(self, request: Request) -> Response:
        body = GenerationSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = body.validated_data
        job = pipeline.start(
            pipeline.GenerationRequest(
                user=dialects.owner(request),
                prompt=values["prompt"],
                model=values["model"],
                aspect_ratio=values["size"],
                references=values["image_urls"],
                references_field="image_urls",
                source=SOURCE,
                callback_url=values["callback_url"],
                base_url=caller_base_url(request),
                idempotency_key=idempotency_key(request),
                **dialects.batch_price(values),
            ),
            pipeline.RunMode.QUEUE,
        )
        return Response(task_object(job, request))


class TaskView(EvolinkView):
    @extend_schema(responses={200: EVOLINK_TASK}, summary="evolink: query a task")
    def get(self, request: Request, task: str) -> Response:
        return Response(task_object(find_task(request, task), request))


class TaskCancelView(EvolinkView):
    """Cancels a task that has not started (task_info.can_cancel); it then reads as failed, task_cancelled."""

    @extend_schema(
        request=None,
        responses={200: EVOLINK_TASK, **dialects.errors(EVOLINK_ERROR, 409)},
        summary="evolink: cancel a task that has not started",
    )
    def post(self, request: Request, task: str) -> Response:
        job = find_task(request, task)
        if not pipeline.cancel(job):
            job.refresh_from_db()
            return self.render_problem(
                dialects.Problem(
                    status.HTTP_409_CONFLICT,
                    "not_cancellable",
                    f"Task '{task}' is {STATUS[dialects.shown_state(job)]} and can no longer be cancelled.",
                )
            )
        return Response(task_object(job, request))


@receiver(job_finished, dispatch_uid="nanoclone.dialects.evolink.callback")
def send_callback(sender: Any, job: Job, **kwargs: Any) -> None:
    if job.source != SOURCE or not job.callback_url:
        return
    body = task_object(job)
    try:
        webhooks.send(job.callback_url, body, event=f"task.{body['status']}", job=job)
    except (safe_fetch.UnsafeURLError, safe_fetch.FetchError) as error:
        # Checked when the task was created; DNS may have changed since.
        log.warning("evolink callback for job %s not sent: %s", job.pk, error)
