"""What the drop-in dialects of hosted Nano Banana APIs (evolink, Runbase, AceData) share.

Each dialect is one module translating its vendor's format to the one pipeline and back; this
module holds token-only authentication, one mapping from exceptions to problems each dialect
renders in its own error shape, the caller's jobs, the Batch API's price (the jobs API's `priority`
and `batch_fallback`), and the signed, absolute URLs of a job's images.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db.models import QuerySet
from django.http import Http404
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from conversations import pipeline
from conversations.models import Job
from gallery.models import Image
from keys import pool
from nanoclone.api.auth import BearerTokenAuthentication
from nanoclone.api.envelope import as_api_error, first_error
from nanoclone.api.envelope import owner as owner  # re-exported: the dialects call dialects.owner(request)
from nanoclone.api.image_serializers import absolute
from nanoclone.api.schema import DocumentedErrors

log = logging.getLogger(__name__)


class DialectTokenAuthentication(BearerTokenAuthentication):
    """API tokens only (hosted-API clients never hold a session); a disabled account's token is 403.

    The token is right but not allowed any more, which the vendors' documents tell apart from a
    missing or wrong token (401).
    """

    invalid_message = "Invalid API token."

    def disabled(self) -> exceptions.APIException:
        return exceptions.PermissionDenied("This API token belongs to a disabled account.")


class DialectTokenScheme(OpenApiAuthenticationExtension):
    """Documents the dialects' token: `Authorization: Bearer <token>`, an API token only (no session)."""

    target_class = DialectTokenAuthentication
    name = "dialectToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "http", "scheme": "bearer", "description": "A NanoClone API token (no session)."}


class CreationThrottle(UserRateThrottle):
    """Limits new tasks per user (NANOCLONE_DIALECT_RATE_LIMIT, e.g. "30/min"); polling is never limited.
    Counted in the shared cache: with Redis, across every web process and host."""

    scope = "dialect"
    cache = caches["shared"]

    def get_rate(self) -> str | None:
        return settings.DIALECT_RATE_LIMIT or None

    def allow_request(self, request: Request, view: APIView) -> bool:
        if request.method != "POST":
            return True
        return super().allow_request(request, view)


@dataclass
class Problem:
    """An error in neutral terms; each dialect renders it in its own shape."""

    status: int
    code: str  # invalid_request, unauthenticated, forbidden, not_found, rate_limited, no_usable_key, ...
    message: str
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def problem_for(error: Exception, no_usable_key_status: int = 503) -> Problem:
    """What went wrong, for any exception a dialect view raises (never an HTML 500)."""
    error = as_api_error(error)
    if isinstance(error, pipeline.InvalidRequest):
        code = "not_found" if error.status == 404 else error.code
        return Problem(error.status, code, error.message, error.field, headers=error.headers)
    if isinstance(error, Http404):
        return Problem(404, "not_found", str(error) or "Not found.")
    if isinstance(error, pool.NoUsableKey):
        seconds = error.retry_after_seconds
        headers = {"Retry-After": str(seconds)} if seconds else {}
        return Problem(no_usable_key_status, "no_usable_key", error.message, headers=headers)
    if isinstance(error, exceptions.ValidationError):
        name, message = first_error(error.detail)
        return Problem(400, "invalid_request", f"{name}: {message}" if name else message, name or None)
    if isinstance(error, exceptions.ParseError):
        return Problem(400, "invalid_request", f"The request body is not valid JSON ({error.detail}).")
    if isinstance(error, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        message = (
            "Missing API token: send 'Authorization: Bearer <token>'."
            if isinstance(error, exceptions.NotAuthenticated)
            else str(error.detail)
        )
        code = "unauthenticated" if isinstance(error, exceptions.NotAuthenticated) else "invalid_token"
        return Problem(401, code, message, headers={"WWW-Authenticate": "Bearer"})
    if isinstance(error, exceptions.PermissionDenied):
        return Problem(403, "forbidden", str(error.detail))
    if isinstance(error, exceptions.Throttled):
        wait = getattr(error, "wait", None)
        headers = {"Retry-After": str(wait)} if wait is not None else {}
        message = "Too many requests; slow down."
        if wait is not None:
            message = f"Too many requests; try again in {wait} seconds."
        return Problem(429, "rate_limited", message, headers=headers)
    if isinstance(error, exceptions.APIException):
        wait = getattr(error, "wait", None)  # DatabaseUnavailable's, as DRF reads Throttled's
        headers = {"Retry-After": str(wait)} if wait else {}
        return Problem(error.status_code, str(error.default_code), str(error.detail), headers=headers)
    log.exception("Unexpected error in a compatible API", exc_info=error)
    return Problem(500, "internal", "NanoClone hit an internal error; it has been logged.")


class DialectSchema(DocumentedErrors):
    """A dialect's operations in /api/schema, under its own tag, each error in the dialect's shape
    (a subclass per dialect sets both: drf-spectacular makes its own instances of the class).

    Besides the errors every door shares, any POST may be throttled (429: CreationThrottle); each
    generating operation lists its own further statuses (409 for a reused Idempotency-Key, the pool's).
    """

    tag = "dialects"

    def get_tags(self) -> list[str]:
        return [self.tag]

    def get_description(self) -> str:  # type: ignore[override]  # drf-spectacular's signature, not DRF's
        return type(self.view).__dict__.get("__doc__") or ""  # the view's own, not its base class's

    def error_codes(self) -> list[int]:
        return super().error_codes() + ([429] if self.method == "POST" else [])


def errors(serializer: Any, *codes: int) -> dict[int, Any]:
    """The `responses` of extend_schema for these statuses, all in a dialect's error shape."""
    return dict.fromkeys(codes, serializer)


class DialectView(APIView):
    """Base of every dialect view: token auth, creation throttle, errors in the dialect's shape."""

    authentication_classes = [DialectTokenAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes = [CreationThrottle]
    no_usable_key_status = 503

    def render_problem(self, problem: Problem) -> Response:
        raise NotImplementedError

    def get_exception_handler(self) -> Callable[[Exception, dict[str, Any]], Response]:
        def handle(error: Exception, context: dict[str, Any]) -> Response:
            problem = problem_for(error, self.no_usable_key_status)
            response = self.render_problem(problem)
            for name, value in problem.headers.items():
                response[name] = value
            return response

        return handle


# Not in the vendors' documents: the jobs API's two fields. Priority "batch" waits for Gemini's Batch
# API, at half the price, within 24 hours (docs/batch.md); with batch_fallback, a batch Gemini didn't
# finish (expired, failed) is made online instead of failing.
PRIORITIES = ("standard", "batch")


def batch_price(values: Mapping[str, Any]) -> dict[str, Any]:
    """GenerationRequest's `priority` and `batch_fallback` for a door's validated `priority` and
    `batch_fallback` fields: priority None (the run mode's) unless "batch"."""
    batch = values.get("priority") == "batch"
    return {"priority": Job.Priority.BATCH if batch else None, "batch_fallback": bool(values.get("batch_fallback"))}


def shown_state(job: Job) -> Job.State:
    """The job's state as a dialect tells it: a job in a Gemini batch (running, phase batched) is
    still queued, at Google and maybe for hours, so it reads as pending, not as running."""
    if job.state == Job.State.RUNNING and job.phase == Job.Phase.BATCHED:
        return Job.State.PENDING
    return Job.State(job.state)


def caller_jobs(request: Request, source: str) -> QuerySet[Job]:
    """The jobs the caller made through this dialect: another user's job is as unknown as a missing one."""
    return Job.objects.filter(user=owner(request), source=source)


def find_job(jobs: QuerySet[Job], job_id: str) -> Job | None:
    """The job of `jobs` with this id, or None (also for an id that can't exist)."""
    pk = parse_uuid(job_id)
    return jobs.filter(pk=pk).first() if pk else None


def parse_uuid(value: str) -> uuid.UUID | None:
    """The UUID in a dialect's task id, or None for an id that can't exist (simply not found)."""
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def output_urls(job: Job, request: Request | None = None) -> list[str]:
    """Absolute signed URLs of the job's images: they download without a token for
    NANOCLONE_SIGNED_URL_MAX_AGE seconds, like the CDN links the hosted APIs hand out."""
    images = Image.objects.filter(job=job, role=Image.Role.OUTPUT).order_by("index")
    return [absolute(request, image.signed_url(), job) for image in images]


def shown_request(data: Any) -> Any:
    """The caller's request as kept on the job: data: URIs shortened (images are stored as files)."""
    if isinstance(data, dict):
        return {key: shown_request(value) for key, value in data.items()}
    if isinstance(data, list):
        return [shown_request(value) for value in data]
    if isinstance(data, str) and data[:5].lower() == "data:" and len(data) > 100:
        return f"{data[:40]}... ({len(data)} characters)"
    return data
