"""The request body every door accepts. Its own module: REST_FRAMEWORK names the parser, and
DRF reads that setting while rest_framework.views is imported, which envelope.py imports."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework import exceptions, parsers, status


class BodyTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"
    default_detail = "The request body is too large (NANOCLONE_MAX_REQUEST_BYTES)."


def refuse_oversized(parser_context: Mapping[str, Any] | None) -> None:
    """BodyTooLarge (413) for a body announced above NANOCLONE_MAX_REQUEST_BYTES, before any byte is read."""
    request = (parser_context or {}).get("request")
    length = request.META.get("CONTENT_LENGTH", "") if request is not None else ""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is not None and str(length).isdigit() and int(length) > limit:
        raise BodyTooLarge()


class CappedJSONParser(parsers.BaseParser):
    """The body every door accepts (REST_FRAMEWORK's only parser): JSON, refused by its announced
    size (NANOCLONE_MAX_REQUEST_BYTES) before any byte is read.

    Not a JSONParser subclass on purpose: DRF reads request.body before calling one of those, and
    Django then raises RequestDataTooBig outside any parser, which no door's error handler knew
    (500s and HTML 400s). BodyTooLarge is an APIException (413) every door renders in its shape.
    Form and multipart bodies get DRF's 415, also in each door's shape.
    """

    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        refuse_oversized(parser_context)
        return parsers.JSONParser().parse(stream, media_type, parser_context)


class CappedMultiPartParser(parsers.MultiPartParser):
    """Uploads (the doors that take files), refused by their announced size like a JSON body: the
    files are then read into memory whole."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        refuse_oversized(parser_context)
        return super().parse(stream, media_type, parser_context)
