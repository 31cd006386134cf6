"""AceData's Nano Banana dialect: POST /nano-banana/images and POST /nano-banana/tasks.

Without callback_url the answer waits for the images (the pipeline runs inline); with one it
comes at once ({success, task_id, trace_id}) and the result is posted to the callback later,
through the one webhook delivery. Priority "batch" (not in AceData's document: the Batch API's
price, within 24 hours) always answers at once, like a callback_url; its task is retrieved or called
back when Gemini's batch is done. AceData's answers carry no status, so an unfinished task, batched
or not, reads as its immediate answer. Errors are {"success": false, "error": {"code", "message"},
"trace_id"}.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.dispatch import receiver
from django.http import Http404
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from conversations import pipeline, safe_fetch, webhooks
from conversations.models import Job
from conversations.signals import job_finished
from nanoclone.api.envelope import StrictCharField, idempotency_key
from nanoclone.api.image_serializers import caller_base_url
from nanoclone.dialects import base as dialects

log = logging.getLogger(__name__)

SOURCE = "acedata"
MODELS = ("nano-banana", "nano-banana-2", "nano-banana-pro")
ASPECT_RATIOS = ("1:1", "3:2", "2:3", "16:9", "9:16", "4:3", "3:4")
RESOLUTIONS = ("1K", "2K", "4K")
MAX_BATCH = 100


def _choice(choices: tuple[str, ...], name: str, **kwargs: Any) -> serializers.ChoiceField:
    message = f"Unknown {name} '{{input}}'; use one of {', '.join(choices)}."
    return serializers.ChoiceField(choices=choices, error_messages={"invalid_choice": message}, **kwargs)


@extend_schema_serializer(component_name="AceDataImagesRequest")
class ImagesSerializer(serializers.Serializer):
    action = _choice(("generate", "edit"), "action")
    prompt = StrictCharField(allow_blank=True)
    model = _choice(MODELS, "model", required=False, default="nano-banana")
    image_urls = serializers.ListField(child=StrictCharField(), required=False, default=list)
    aspect_ratio = _choice(ASPECT_RATIOS, "aspect_ratio", required=False)
    resolution = _choice(RESOLUTIONS, "resolution", required=False)
    callback_url = StrictCharField(required=False, allow_blank=True, default="")
    # Not in AceData's document: the Batch API's price (dialects.PRIORITIES).
    priority = _choice(dialects.PRIORITIES, "priority", required=False)
    batch_fallback = serializers.BooleanField(required=False, default=False)

    def validate(self, values: dict[str, Any]) -> dict[str, Any]:
        if values["action"] == "edit" and not values["image_urls"]:
            raise serializers.ValidationError({"image_urls": "image_urls is required when action is edit."})
        return values


@extend_schema_serializer(component_name="AceDataTasksRequest")
class TasksSerializer(serializers.Serializer):
    action = _choice(("retrieve", "retrieve_batch"), "action")
    id = StrictCharField(required=False)
    ids = serializers.ListField(child=StrictCharField(), required=False, max_length=MAX_BATCH)

    def validate(self, values: dict[str, Any]) -> dict[str, Any]:
        wanted = "id" if values["action"] == "retrieve" else "ids"
        if wanted not in values:
            raise serializers.ValidationError({wanted: f"{wanted} is required when action is {values['action']}."})
        return values


def answer(job: Job, request: Request | None = None) -> dict[str, Any]:
    """The body AceData answers (or posts to the callback) for the job as it stands now."""
    body: dict[str, Any] = {"success": True, "task_id": str(job.id), "trace_id": job.options.get("trace_id", "")}
    if job.state == Job.State.SUCCEEDED:
        body["data"] = [{"prompt": job.prompt, "image_url": url} for url in dialects.output_urls(job, request)]
    elif job.state in (Job.State.FAILED, Job.State.CANCELLED):
        body["success"] = False
        body["error"] = {"code": job.error_code or "failed", "message": job.error}
    return body


# --- OpenAPI: AceData's shapes, for drf-spectacular ----------------------------------------

ACEDATA_ERROR = inline_serializer(
    "AceDataError",
    {
        "success": serializers.BooleanField(),
        "error": inline_serializer(
            "AceDataErrorDetail", {"code": serializers.CharField(), "message": serializers.CharField(allow_blank=True)}
        ),
        "trace_id": serializers.CharField(allow_blank=True),
        "task_id": serializers.UUIDField(required=False, help_text="A failed generation's task."),
    },
)
ACEDATA_ANSWER = inline_serializer(
    "AceDataAnswer",
    {
        "success": serializers.BooleanField(),
        "task_id": serializers.UUIDField(),
        "trace_id": serializers.CharField(allow_blank=True),
        "data": serializers.ListField(
            child=inline_serializer(
                "AceDataImage", {"prompt": serializers.CharField(allow_blank=True), "image_url": serializers.URLField()}
            ),
            required=False,
        ),
        "error": inline_serializer(
            "AceDataTaskError",
            {"code": serializers.CharField(), "message": serializers.CharField(allow_blank=True)},
            required=False,
        ),
    },
)
ACEDATA_TASK = inline_serializer(
    "AceDataTask",
    {
        "id": serializers.UUIDField(),
        "created_at": serializers.FloatField(),
        "request": serializers.DictField(),
        "response": ACEDATA_ANSWER,
    },
)
ACEDATA_TASKS = inline_serializer(
    "AceDataTaskBatch", {"items": serializers.ListField(child=ACEDATA_TASK), "count": serializers.IntegerField()}
)


class AceDataSchema(dialects.DialectSchema):
    tag = "acedata"
    error_serializer = ACEDATA_ERROR


class AceDataView(dialects.DialectView):
    schema = AceDataSchema()
    trace_id = ""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Every answer, errors included, carries a trace id the caller can quote.
        self.trace_id = str(uuid.uuid4())
        super().initial(request, *args, **kwargs)

    def render_problem(self, problem: dialects.Problem) -> Response:
        code = {"unauthenticated": "no_token", "invalid_request": "bad_request"}.get(problem.code, problem.code)
        error = {"code": code, "message": problem.message}
        return Response(
            {"success": False, "error": error, "trace_id": self.trace_id or str(uuid.uuid4())}, status=problem.status
        )


class ImagesView(AceDataView):
    @extend_schema(
        request=ImagesSerializer,
        # A failed generation answers its job's failure status: success false, its task_id along.
        responses={200: ACEDATA_ANSWER, **dialects.errors(ACEDATA_ERROR, 409, 422, 502, 503)},
        summary="AceData: generate or edit images",
    )
    def post(self, request: Request) -> Response:
        body = ImagesSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = body.validated_data
        generating = values["action"] == "generate"
        generation = pipeline.GenerationRequest(
            user=dialects.owner(request),
            prompt=values["prompt"],
            model=values["model"],
            # For edit, AceData takes ratio and resolution from the first image; resolution is Pro-only.
            aspect_ratio=values.get("aspect_ratio") if generating else None,
            resolution=values.get("resolution") if generating and values["model"] == "nano-banana-pro" else None,
            references=values["image_urls"],
            references_field="image_urls",
            source=SOURCE,
            options={"trace_id": self.trace_id, "request": dialects.shown_request(request.data)},
            callback_url=values["callback_url"],
            base_url=caller_base_url(request),
            idempotency_key=idempotency_key(request),
            **dialects.batch_price(values),
        )
        if values["callback_url"] or generation.priority == Job.Priority.BATCH:
            # Nobody waits hours on an open request: a batch-priced task answers at once too.
            return Response(answer(pipeline.start(generation, pipeline.RunMode.QUEUE), request))
        # Like the hosted API, a request no key could serve is refused, not recorded as a failed task.
        job = pipeline.start(generation, pipeline.RunMode.INLINE, require_usable_key=True)
        status = 200 if job.state == Job.State.SUCCEEDED else job.failure_status
        return Response(answer(job, request), status=status)


class TasksView(AceDataView):
    @extend_schema(
        request=TasksSerializer,
        responses={
            200: PolymorphicProxySerializer("AceDataTasks", [ACEDATA_TASK, ACEDATA_TASKS], None),
            **dialects.errors(ACEDATA_ERROR, 404),  # an unknown id to retrieve
        },
        summary="AceData: retrieve one task or a batch",
    )
    def post(self, request: Request) -> Response:
        body = TasksSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = body.validated_data
        if values["action"] == "retrieve":
            job = self._jobs(request, [values["id"]]).first()
            if job is None:
                raise Http404(f"Task '{values['id']}' was not found.")
            return Response(self._task(job, request))
        items = [self._task(job, request) for job in self._jobs(request, values["ids"]).order_by("created_at")]
        return Response({"items": items, "count": len(items)})

    @staticmethod
    def _jobs(request: Request, ids: list[str]) -> Any:
        valid = [job_id for job_id in map(dialects.parse_uuid, ids) if job_id]
        return dialects.caller_jobs(request, SOURCE).filter(pk__in=valid).select_related("user_message")

    @staticmethod
    def _task(job: Job, request: Request) -> dict[str, Any]:
        return {
            "id": str(job.id),
            "created_at": job.created_at.timestamp(),
            "request": job.options.get("request", {}),
            # Until the job ends, the immediate answer of an async request; then the final one.
            "response": answer(job, request),
        }


@receiver(job_finished, dispatch_uid="nanoclone.dialects.acedata.callback")
def send_callback(sender: Any, job: Job, **kwargs: Any) -> None:
    if job.source != SOURCE or not job.callback_url:
        return
    body = answer(job)
    event = "task.succeeded" if body["success"] else "task.failed"
    try:
        webhooks.send(job.callback_url, body, event=event, job=job)
    except (safe_fetch.UnsafeURLError, safe_fetch.FetchError) as error:
        # Checked when the task was created; DNS may have changed since.
        log.warning("AceData callback for job %s not sent: %s", job.pk, error)
