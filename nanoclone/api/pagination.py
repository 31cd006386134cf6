"""Keyset pages for /api/images: `next` and `previous` are `?cursor=` links.

Following them costs the same on the first page and the two-thousandth (no OFFSET), and images
generated or deleted meanwhile never shift what the next page holds. `?page=N` still works (an
OFFSET, for clients that jump to a page), and every answer keeps `count`, `page` and `pages`.
"""

from __future__ import annotations

import base64
from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from gallery import browse
from nanoclone.api.envelope import ok


class EnvelopePagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_size(self, request: Request) -> int | None:
        # DRF quietly falls back to the default on page_size=null or -3: say it's wrong instead.
        value = request.query_params.get(self.page_size_query_param, "")
        if value and not (value.isdigit() and int(value) >= 1):
            raise ValidationError({self.page_size_query_param: f"'{value}' is not a page size (1 to 200)."})
        return super().get_page_size(request)

    def get_paginated_response(self, data: list[object]) -> Response:
        assert self.page is not None
        return ok(
            {
                "count": self.page.paginator.count,
                "page": self.page.number,
                "pages": self.page.paginator.num_pages,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        page = super().get_paginated_response_schema(schema)
        page["properties"]["page"] = {"type": "integer", "example": 1}
        page["properties"]["pages"] = {"type": "integer", "example": 3}
        return {
            "type": "object",
            "required": ["success", "data", "error"],
            "properties": {
                "success": {"type": "boolean", "example": True},
                "data": page,
                "error": {"type": "object", "nullable": True, "example": None},
            },
        }


class KeysetPagination(EnvelopePagination):
    cursor_query_param = "cursor"

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        cursor = {
            "name": self.cursor_query_param,
            "required": False,
            "in": "query",
            "description": "Where a page starts: the `cursor` of a `next` or `previous` link (instead of `page`).",
            "schema": {"type": "string"},
        }
        return [*super().get_schema_operation_parameters(view), cursor]

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any]:
        self.request = self._request = request
        raw = request.query_params.get(self.cursor_query_param, "")
        if not raw:
            rows: list[Any] = list(super().paginate_queryset(queryset, request, view) or [])
            assert self.page is not None
            self.count, self.number = self.page.paginator.count, self.page.number
            self.has_next, self.has_previous = self.page.has_next(), self.page.has_previous()
            self.rows = rows
            return rows
        before, number, position = _decode(raw)
        size = self.get_page_size(request) or self.page_size
        page = browse.keyset_page(queryset, position, size, before=before)
        self.rows, self.count, self.number = page.items, queryset.count(), number
        more = bool(page.next_cursor)
        self.has_next, self.has_previous = (True, more) if before else (more, number > 1)
        return self.rows

    def _link(self, before: bool, number: int, item: Any) -> str:
        url = remove_query_param(self._request.build_absolute_uri(), self.page_query_param)
        token = f"{'p' if before else 'n'}{number}.{browse.encode_cursor(item)}"
        return replace_query_param(url, self.cursor_query_param, base64.urlsafe_b64encode(token.encode()).decode())

    def get_next_link(self) -> str | None:
        return self._link(False, self.number + 1, self.rows[-1]) if self.has_next and self.rows else None

    def get_previous_link(self) -> str | None:
        return self._link(True, self.number - 1, self.rows[0]) if self.has_previous and self.rows else None

    def get_paginated_response(self, data: list[object]) -> Response:
        size = self.get_page_size(self._request) or self.page_size
        return ok(
            {
                "count": self.count,
                "page": self.number,
                "pages": max(1, -(-self.count // size)),
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )


def _decode(raw: str) -> tuple[bool, int, Any]:
    try:
        token = base64.urlsafe_b64decode(raw.encode()).decode()
        head, cursor = token.split(".", 1)
        direction, number = head[0], int(head[1:])
    except (ValueError, IndexError, UnicodeDecodeError):
        direction, number, cursor = "", 0, ""
    position = browse.decode_cursor(cursor)
    if direction not in {"n", "p"} or number < 1 or position is None:
        raise ValidationError({"cursor": f"'{raw}' is not a cursor this API gave (follow `next` or `previous`)."})
    return direction == "p", number, position
