"""Gemini's Batch API on the Gemini door, so google-genai's client.batches (inline requests) runs at
the Batch API's price through NanoClone.

POST /{v1beta,v1}/models/{model}:batchGenerateContent, GET /{v}/batches, GET and DELETE
/{v}/batches/{id}, POST /{v}/batches/{id}:cancel.

Each inline request is read exactly as generateContent reads one (gemini.generation_request) and
becomes a job at the Batch API's price (the pipeline packs it into a Gemini batch); a GeminiBatch
keeps the caller's batch: its jobs in request order, each with its metadata. The batch's state is
read from its jobs: pending while all wait, running once one is at Google or done, succeeded once
all finished, cancelled once cancelled. Its inline responses are generateContent's answer for each
job (a refusal too, as Gemini words it), or the error generateContent would have answered.
A file-based batch (inputConfig.fileName) is refused: NanoClone keeps no uploaded files.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any, NoReturn

from django.db import transaction
from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from conversations import pipeline
from conversations.models import Job
from nanoclone.dialects import base as dialects
from nanoclone.dialects import gemini
from nanoclone.models import GeminiBatch

TYPES = "type.googleapis.com/google.ai.generativelanguage.v1main."
REQUESTS = "batch.inputConfig.requests.requests"
PENDING, RUNNING, SUCCEEDED = "BATCH_STATE_PENDING", "BATCH_STATE_RUNNING", "BATCH_STATE_SUCCEEDED"
CANCELLED = "BATCH_STATE_CANCELLED"
PAGE_SIZE, MAX_PAGE_SIZE = 50, 1000


# --- OpenAPI ---------------------------------------------------------------------------------

BATCH_REQUEST = inline_serializer(
    "GeminiBatchGenerateContentRequest",
    {
        "batch": serializers.DictField(
            help_text="{displayName, inputConfig: {requests: {requests: [{request: <GenerateContentRequest>, "
            "metadata}]}}}; inline requests only."
        )
    },
)
OPERATION = inline_serializer(
    "GeminiBatchOperation",
    {
        "name": serializers.CharField(help_text="batches/{id}"),
        "metadata": serializers.DictField(
            help_text="The GenerateContentBatch: model, displayName, createTime, updateTime, endTime, state, "
            "batchStats, name, and once done its output (inlinedResponses)."
        ),
        "done": serializers.BooleanField(required=False),
        "response": serializers.DictField(required=False, help_text="The GenerateContentBatchOutput, once done."),
    },
)
OPERATIONS = inline_serializer(
    "GeminiBatchOperationList",
    {"operations": serializers.ListField(child=OPERATION), "nextPageToken": serializers.CharField(required=False)},
)
EMPTY = inline_serializer("GeminiEmpty", {})
BATCH = OpenApiParameter("batch", str, OpenApiParameter.PATH, description="The id in the batch's name, batches/{id}.")


# --- a batch request -> jobs ------------------------------------------------------------------


def _object(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise pipeline.InvalidRequest(name, f"{name} must be an object.")
    return value


def _within(where: str, error: pipeline.InvalidRequest) -> NoReturn:
    """An item's error, saying which item: its field under the batch's, as Google names them."""
    if type(error) is pipeline.InvalidRequest and error.status == 400:
        field = gemini.FIELDS.get(error.field, error.field)
        error.field = f"{where}.{field}"
        error.message = f"{where}: {error.message}"
        error.args = (error.message,)
    raise error


def _inline_requests(body: Any) -> tuple[str, list[dict[str, Any]]]:
    """The display name and the inline requests of a batchGenerateContent body."""
    batch = _object(_object(body, "body").get("batch"), "batch")
    display_name = gemini._get(batch, "displayName")
    if not isinstance(display_name, str | None):
        raise pipeline.InvalidRequest("batch.displayName", "batch.displayName must be a string.")
    source = _object(gemini._get(batch, "inputConfig"), "batch.inputConfig")
    if gemini._get(source, "fileName") is not None:
        raise pipeline.InvalidRequest(
            "batch.inputConfig.fileName",
            "NanoClone's Batch API takes inline requests only (inputConfig.requests); "
            "a batch from an uploaded file (inputConfig.fileName) is not accepted.",
        )
    requests = _object(source.get("requests"), "batch.inputConfig.requests").get("requests")
    if not isinstance(requests, list) or not requests:
        raise pipeline.InvalidRequest(
            REQUESTS, f"{REQUESTS} is required: a list of {{request, metadata}}, one per generation."
        )
    return (display_name or "")[:512], [_object(item, f"{REQUESTS}[{index}]") for index, item in enumerate(requests)]


def create(request: Request, version: str, model: str) -> tuple[GeminiBatch, list[Job]]:
    """The caller's batch and its jobs, one per inline request at the Batch API's price; nothing is
    recorded when one of them can't be served."""
    served = gemini.served_model(model, version)
    display_name, items = _inline_requests(request.data)
    generations = []
    for index, item in enumerate(items):
        where = f"{REQUESTS}[{index}]"
        metadata = item.get("metadata")
        if not isinstance(metadata, dict | None):
            raise pipeline.InvalidRequest(f"{where}.metadata", f"{where}.metadata must be an object.")
        try:
            generation, with_text = gemini.generation_request(
                request, item.get("request"), served, version, "batchGenerateContent"
            )
        except pipeline.InvalidRequest as error:
            _within(f"{where}.request", error)
        generation = replace(generation, priority=Job.Priority.BATCH, batch_fallback=False, idempotency_key="")
        generations.append((generation, with_text, metadata))
    with transaction.atomic():  # every request a job, or none
        jobs, recorded = [], []
        for index, (generation, with_text, metadata) in enumerate(generations):
            try:
                job = pipeline.start(generation, pipeline.RunMode.QUEUE)
            except pipeline.InvalidRequest as error:
                _within(f"{REQUESTS}[{index}].request", error)
            jobs.append(job)
            item = {"job": str(job.pk), "text": with_text}
            recorded.append(item if metadata is None else {**item, "metadata": metadata})
        batch = GeminiBatch.objects.create(
            user=dialects.owner(request), model=served.id, display_name=display_name, items=recorded
        )
    return batch, jobs


# --- a batch -> Google's Operation ------------------------------------------------------------


def _timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _state(batch: GeminiBatch, jobs: list[Job | None]) -> str:
    if batch.cancelled_at is not None:
        return CANCELLED
    if all(job is None or job.finished for job in jobs):
        return SUCCEEDED
    if all(job is not None and job.state == Job.State.PENDING for job in jobs):
        return PENDING  # none sent to Gemini yet
    return RUNNING


def _answered(job: Job | None) -> bool:
    """Whether generateContent would answer the job with a 200: it succeeded, or Gemini refused it."""
    return job is not None and (job.state == Job.State.SUCCEEDED or job.error_code in gemini.REFUSALS)


def _inlined(item: dict[str, Any], job: Job | None) -> dict[str, Any]:
    """One item's answer: generateContent's GenerateContentResponse for its job, or its error."""
    if job is not None and _answered(job):
        answered: dict[str, Any] = {"response": gemini.answer(job, item.get("text", True))}
    else:
        status, message = (404, "This request's job was deleted.")
        if job is not None:
            status, message = gemini.failure_status(job)[0], job.error
        error = {"code": status, "message": message, "status": gemini.STATUS_NAMES.get(status, "UNKNOWN")}
        answered = {"error": error}
    if "metadata" in item:
        answered["metadata"] = item["metadata"]
    return answered


def operation(batch: GeminiBatch, jobs: list[Job | None], with_output: bool = True) -> dict[str, Any]:
    """The batch as Google's long-running Operation: `metadata` is the GenerateContentBatch, `response`
    its output once it is done (`with_output`: the list leaves the outputs, with their images, out)."""
    state = _state(batch, jobs)
    done = state in (SUCCEEDED, CANCELLED)
    unfinished = sum(job is not None and not job.finished for job in jobs)
    succeeded = sum(_answered(job) for job in jobs)
    failed = sum(job is None or job.finished for job in jobs) - succeeded
    # Counts are int64s, so strings on the wire; proto3 leaves zeros out.
    counts = {"requestCount": len(jobs), "pendingRequestCount": unfinished}
    counts |= {"successfulRequestCount": succeeded, "failedRequestCount": failed}
    stats = {name: str(count) for name, count in counts.items() if count}
    updated = max([batch.created_at, *(job.updated_at for job in jobs if job is not None)])
    name = f"batches/{batch.id.hex}"
    metadata: dict[str, Any] = {
        "@type": TYPES + "GenerateContentBatch",
        "model": f"models/{batch.model}",
        "displayName": batch.display_name,
        "createTime": _timestamp(batch.created_at),
        "updateTime": _timestamp(max(updated, batch.cancelled_at or updated)),
        "batchStats": stats,
        "state": state,
        "name": name,
    }
    answer: dict[str, Any] = {"name": name, "metadata": metadata}
    if done:
        finished = [job.finished_at for job in jobs if job is not None and job.finished_at is not None]
        metadata["endTime"] = _timestamp(batch.cancelled_at or max(finished, default=updated))
        answer["done"] = True
        if with_output:
            output = {
                "inlinedResponses": {
                    "inlinedResponses": [_inlined(item, job) for item, job in zip(batch.items, jobs, strict=True)]
                }
            }
            metadata["output"] = output
            answer["response"] = {"@type": TYPES + "GenerateContentBatchOutput", **output}
    return answer


def jobs_of(batches: list[GeminiBatch], fields: tuple[str, ...] = ()) -> list[list[Job | None]]:
    """Each batch's jobs in request order (None for a job deleted since), in one query."""
    ids = [item["job"] for batch in batches for item in batch.items]
    found = Job.objects.filter(pk__in=ids)
    found = found.only(*fields) if fields else found.select_related("assistant_message")
    by_id = {str(job.pk): job for job in found}
    return [[by_id.get(item["job"]) for item in batch.items] for batch in batches]


def find(request: Request, batch: str) -> GeminiBatch:
    """The caller's batch of this id; another user's is as unknown as a missing one (404)."""
    pk = dialects.parse_uuid(batch)
    found = GeminiBatch.objects.filter(pk=pk, user=dialects.owner(request)).first() if pk else None
    if found is None:
        raise Http404(f"batches/{batch} is not found: no batch of yours has this name.")
    return found


# --- views -------------------------------------------------------------------------------------


class BatchGenerateContentView(gemini.GeminiView):
    @extend_schema(
        parameters=[gemini.VERSION, gemini.MODEL],
        request=BATCH_REQUEST,
        responses={200: OPERATION, **dialects.errors(gemini.GEMINI_ERROR, 429, 503)},
        summary="Gemini: batches.create (batchGenerateContent)",
        operation_id="gemini_batch_generate_content",
    )
    def post(self, request: Request, version: str, model: str) -> Response:
        batch, jobs = create(request, version, model)
        return Response(operation(batch, list(jobs)))


class BatchesView(gemini.GeminiView):
    @extend_schema(
        parameters=[
            gemini.VERSION,
            OpenApiParameter("pageSize", int, description=f"At most this many batches (default {PAGE_SIZE})."),
            OpenApiParameter("pageToken", str, description="The nextPageToken of the page before."),
        ],
        responses={200: OPERATIONS},
        summary="Gemini: batches.list",
        operation_id="gemini_batches_list",
    )
    def get(self, request: Request, version: str) -> Response:
        """The caller's batches, newest first, each with its state and counts (get reads its responses)."""
        try:
            size = min(max(int(request.query_params.get("pageSize") or PAGE_SIZE), 1), MAX_PAGE_SIZE)
            start = max(int(request.query_params.get("pageToken") or 0), 0)
        except ValueError as error:
            raise pipeline.InvalidRequest("pageToken", "pageSize and pageToken must be numbers.") from error
        mine = GeminiBatch.objects.filter(user=dialects.owner(request)).order_by("-created_at")
        page = list(mine[start : start + size + 1])
        shown = page[:size]
        fields = ("id", "state", "phase", "error_code", "updated_at", "finished_at")
        listed: dict[str, Any] = {
            "operations": [
                operation(batch, jobs, with_output=False)
                for batch, jobs in zip(shown, jobs_of(shown, fields), strict=True)
            ]
        }
        if len(page) > size:
            listed["nextPageToken"] = str(start + size)
        return Response(listed)


class BatchView(gemini.GeminiView):
    @extend_schema(
        parameters=[gemini.VERSION, BATCH],
        responses={200: OPERATION},
        summary="Gemini: batches.get",
        operation_id="gemini_batches_get",
    )
    def get(self, request: Request, version: str, batch: str) -> Response:
        found = find(request, batch)
        return Response(operation(found, jobs_of([found])[0]))

    @extend_schema(
        parameters=[gemini.VERSION, BATCH],
        responses={200: EMPTY},
        summary="Gemini: batches.delete",
        operation_id="gemini_batches_delete",
    )
    def delete(self, request: Request, version: str, batch: str) -> Response:
        """Forget the batch, as Google's delete does: its unfinished requests go on (cancel stops them),
        and its images stay in the gallery."""
        find(request, batch).delete()
        return Response({})


class BatchCancelView(gemini.GeminiView):
    @extend_schema(
        parameters=[gemini.VERSION, BATCH],
        request=None,
        responses={200: EMPTY},
        summary="Gemini: batches.cancel",
        operation_id="gemini_batches_cancel",
    )
    def post(self, request: Request, version: str, batch: str) -> Response:
        """Cancel every request of the batch that has not finished; a batch already done stays as it is."""
        found = find(request, batch)
        jobs = [job for job in jobs_of([found])[0] if job is not None]
        if all(job.finished for job in jobs):
            return Response({})
        if GeminiBatch.objects.filter(pk=found.pk, cancelled_at__isnull=True).update(cancelled_at=timezone.now()):
            for job in jobs:
                if not job.finished:
                    pipeline.cancel(job)
        return Response({})
