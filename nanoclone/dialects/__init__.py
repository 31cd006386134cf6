"""Drop-in compatible dialects of hosted Nano Banana APIs (evolink, Runbase, AceData).

Each dialect is one module translating its vendor's format to the one pipeline and back; this
package holds what they share: token-only authentication, one mapping from exceptions to
problems each dialect renders in its own error shape, fetching caller image URLs safely,
callback URL checks and the signed, absolute URLs of a job's images.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.http import Http404
from rest_framework import exceptions
from rest_framework.authtoken.models import Token
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from conversations import pipeline
from conversations.models import Job
from gallery.models import Image
from gallery.serializers import absolute
from keys import pool
from nanoclone import safe_fetch
from nanoclone.api import first_error
from nanoclone.api import owner as owner  # re-exported: the dialects call dialects.owner(request)
from nanoclone.auth import BearerTokenAuthentication

log = logging.getLogger(__name__)


class DialectTokenAuthentication(BearerTokenAuthentication):
    """API tokens only (hosted-API clients never hold a session); a disabled account's token is 403.

    The token is right but not allowed any more, which the vendors' documents tell apart from a
    missing or wrong token (401).
    """

    def authenticate_credentials(self, key: str) -> tuple[Any, Token]:
        token = Token.objects.select_related("user").filter(key=key).first()
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid API token.")
        if not token.user.is_active:
            raise exceptions.PermissionDenied("This API token belongs to a disabled account.")
        return token.user, token


class CreationThrottle(UserRateThrottle):
    """Limits new tasks per user (NANOCLONE_DIALECT_RATE_LIMIT, e.g. "30/min"); polling is never limited."""

    scope = "dialect"

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
    if isinstance(error, pipeline.InvalidRequest):
        return Problem(
            error.status, "not_found" if error.status == 404 else "invalid_request", error.message, error.field
        )
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
        return Problem(error.status_code, str(error.default_code), str(error.detail))
    log.exception("Unexpected error in a compatible API", exc_info=error)
    return Problem(500, "internal", "NanoClone hit an internal error; it has been logged.")


class DialectView(APIView):
    """Base of every dialect view: token auth, creation throttle, errors in the dialect's shape."""

    authentication_classes = [DialectTokenAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes = [CreationThrottle]
    schema = None  # documented by each vendor, not part of NanoClone's own OpenAPI schema
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


def base_url(request: Request) -> str:
    """Where this NanoClone is reachable, kept on the job so callbacks can build absolute URLs."""
    return settings.PUBLIC_URL or request.build_absolute_uri("/").rstrip("/")


def output_urls(job: Job, request: Request | None = None) -> list[str]:
    """Absolute signed URLs of the job's images: they download without a token for
    NANOCLONE_SIGNED_URL_MAX_AGE seconds, like the CDN links the hosted APIs hand out."""
    images = Image.objects.filter(job=job, role=Image.Role.OUTPUT).order_by("index")
    if request is not None or settings.PUBLIC_URL:
        return [absolute(request, image.signed_url()) for image in images]
    return [job.options.get("base_url", "") + image.signed_url() for image in images]


def check_callback(url: str | None) -> str:
    """A caller's callback URL checked now, so a bad one is a 400 at once (https, public, <= 2048)."""
    if not url:
        return ""
    try:
        return safe_fetch.check_callback_url(url)
    except (safe_fetch.UnsafeURLError, safe_fetch.FetchError) as error:
        raise pipeline.InvalidRequest("callback_url", str(error)) from error


def fetch_references(urls: Sequence[str], limit: int, name: str = "image_urls") -> list[bytes]:
    """Download (http/https, SSRF-safe) or decode (data: URIs) the caller's reference images."""
    if len(urls) > limit:
        raise pipeline.InvalidRequest(name, f"At most {limit} images are accepted in {name}; got {len(urls)}.")
    images = []
    for number, url in enumerate(urls):
        try:
            images.append(safe_fetch.load_image(url))
        except (safe_fetch.UnsafeURLError, safe_fetch.FetchError) as error:
            raise pipeline.InvalidRequest(name, f"{name}[{number}]: {error}") from error
    return images


def require_usable_key() -> None:
    """Refuse a new async task at once when no key could serve it, instead of queueing a failure."""
    if not pool.usable_keys().exists():
        raise pool.explain_no_usable_key()


def shown_request(data: Any) -> Any:
    """The caller's request as kept on the job: data: URIs shortened (images are stored as files)."""
    if isinstance(data, dict):
        return {key: shown_request(value) for key, value in data.items()}
    if isinstance(data, list):
        return [shown_request(value) for value in data]
    if isinstance(data, str) and data[:5].lower() == "data:" and len(data) > 100:
        return f"{data[:40]}... ({len(data)} characters)"
    return data
