"""The native API's envelope: every answer is {"success", "data", "error"}, errors included."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from conversations.pipeline import InvalidRequest


def ok(data: Any, status_code: int = status.HTTP_200_OK) -> Response:
    return Response({"success": True, "data": data, "error": None}, status=status_code)


def fail(code: str, message: str, status_code: int, headers: dict[str, str] | None = None, **details: Any) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return Response({"success": False, "data": None, "error": error}, status=status_code, headers=headers)


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


def envelope_exception_handler(error: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(error, InvalidRequest):
        return fail(
            "not_found" if error.status == 404 else "invalid_request",
            error.message,
            error.status,
            field=error.field,
        )
    if isinstance(error, Http404):
        return fail("not_found", str(error) or "Not found.", 404)
    response = exception_handler(error, context)
    if response is None:
        return None
    if isinstance(error, exceptions.ValidationError):
        field, message = first_error(error.detail)
        text = f"{field}: {message}" if field else message
        return fail("invalid_request", text, response.status_code, field=field or None)
    code = getattr(error, "default_code", "error")
    detail = getattr(error, "detail", str(error))
    headers = {k: v for k, v in response.items() if k in ("WWW-Authenticate", "Retry-After", "Allow")}
    return fail(str(code), str(detail), response.status_code, headers=headers)


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of quietly turning them into text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError(f"Expected a string but got {type(data).__name__}.")
        return super().to_internal_value(data)
