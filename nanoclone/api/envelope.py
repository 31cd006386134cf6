"""The native API's envelope: every answer is {"success", "data", "error"}, errors included."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any, cast

from django.contrib.auth.models import User
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler

from conversations.pipeline import InvalidRequest
from gallery import storage
from nanoclone import databases
from nanoclone.api.parsers import BodyTooLarge
from nanoclone.api.parsers import CappedJSONParser as CappedJSONParser  # re-exported: the views name it

log = logging.getLogger(__name__)


def ok(data: Any, status_code: int = status.HTTP_200_OK) -> Response:
    return Response({"success": True, "data": data, "error": None}, status=status_code)


def fail(code: str, message: str, status_code: int, headers: dict[str, str] | None = None, **details: Any) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return Response({"success": False, "data": None, "error": error}, status=status_code, headers=headers)


def timestamp(moment: dt.datetime | None) -> str | None:
    """The one way every door writes a time: UTC, to the second, with a Z (2026-12-01T09:30:00Z)."""
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if moment else None


def idempotency_key(request: Request) -> str:
    """The Idempotency-Key header: a client retrying a POST after a timeout gets the first answer back."""
    return request.headers.get("Idempotency-Key", "").strip()[:200]


def owner(request: Request) -> User:
    """The signed-in user of an API view: IsAuthenticated (the default permission) lets only real users through."""
    return cast(User, request.user)


def first_error(detail: Any, path: str = "") -> tuple[str, str]:
    """The first message of a DRF error tree, with the field it belongs to."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = path if key == "non_field_errors" else (f"{path}.{key}" if path else str(key))
            return first_error(value, name)
    if isinstance(detail, list) and detail:
        for index, value in enumerate(detail):
            if value:
                return first_error(value, path if not isinstance(value, dict) else f"{path}[{index}]")
    return path, str(detail)


class DatabaseUnavailable(exceptions.APIException):
    """The database busy or out of reach (nanoclone.databases): a 503 in every door's own shape."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "database_unavailable"
    default_detail = databases.MESSAGE
    wait = databases.RETRY_AFTER_SECONDS  # DRF's exception_handler sends it as Retry-After


class StoreUnavailable(exceptions.APIException):
    """The media store out of reach (gallery.storage): a 503 in every door's own shape."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "store_unavailable"
    default_detail = storage.StoreUnavailable.message
    wait = databases.RETRY_AFTER_SECONDS


def as_api_error(error: Exception) -> Exception:
    """What every door's exception handler starts from: DatabaseUnavailable for a database that is
    busy or out of reach, StoreUnavailable for the media store, which would otherwise be a 500."""
    if isinstance(error, storage.StoreUnavailable):
        return StoreUnavailable()
    return DatabaseUnavailable() if databases.noted(error) else error


def envelope_exception_handler(error: Exception, context: dict[str, Any]) -> Response | None:
    error = as_api_error(error)
    if isinstance(error, InvalidRequest):
        return fail(
            "not_found" if error.status == 404 else error.code,
            error.message,
            error.status,
            headers=error.headers,
            field=error.field,
        )
    if isinstance(error, Http404):
        return fail("not_found", str(error) or "Not found.", 404)
    if isinstance(error, RequestDataTooBig):
        return fail("too_large", BodyTooLarge.default_detail, 413)
    response = exception_handler(error, context)
    if response is None:
        # A bug, not a bad request: log it once with its traceback, answer in the envelope.
        log.error("Unhandled error in %s", context.get("view"), exc_info=error)
        return fail("internal", "NanoClone hit an internal error; it has been logged.", 500)
    if isinstance(error, exceptions.ValidationError):
        field, message = first_error(error.detail)
        text = f"{field}: {message}" if field else message
        if field:
            return fail("invalid_request", text, response.status_code, field=field)
        return fail("invalid_request", text, response.status_code)
    code = getattr(error, "default_code", "error")
    detail = getattr(error, "detail", str(error))
    headers = {k: v for k, v in response.items() if k in ("WWW-Authenticate", "Retry-After", "Allow")}
    return fail(str(code), str(detail), response.status_code, headers=headers)


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of quietly turning them into text."""

    # A named message, so a door in another language (the jobs API) can say it in its own.
    default_error_messages = {"not_a_string": "Expected a string but got {type}."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string", type=type(data).__name__)
        return super().to_internal_value(data)


class StrictUUIDField(serializers.UUIDField):
    """A UUIDField that takes only a string: DRF would quietly turn the number 5 into UUID(int=5)."""

    def to_internal_value(self, data: Any) -> uuid.UUID:
        if not isinstance(data, str):
            raise serializers.ValidationError(f"Expected a UUID string but got {type(data).__name__}.")
        return super().to_internal_value(data)


# --- OpenAPI: what the envelope looks like, for drf-spectacular ----------------------------------

ERROR_ENVELOPE = inline_serializer(
    "ErrorEnvelope",
    {
        "success": serializers.BooleanField(default=False),
        "data": serializers.JSONField(allow_null=True, default=None),
        "error": inline_serializer(
            "Error",
            {
                "code": serializers.CharField(help_text="Machine-readable: invalid_request, not_found, ..."),
                "message": serializers.CharField(help_text="Human-readable, safe to show."),
                "details": serializers.DictField(required=False, help_text="For example the offending field."),
            },
        ),
    },
)


def enveloped(name: str, data: serializers.Field) -> serializers.Serializer:
    """The schema of a successful answer whose `data` is `data`."""
    return inline_serializer(
        name,
        {"success": serializers.BooleanField(default=True), "data": data, "error": serializers.JSONField(default=None)},
    )


@csrf_exempt  # a POST to an unknown path: the door's JSON 404, not the CSRF failure page
def api_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(
        {
            "success": False,
            "data": None,
            "error": {"code": "not_found", "message": f"No endpoint at {request.path}."},
        },
        status=404,
    )
