"""The OpenAPI schema tells the truth: every operation documents the errors it really answers.

drf-spectacular documents what a view declares; the errors every door shares (a bad request, a
missing token, an unknown id, a body too large or not JSON) come from the plumbing, not from the
view, so this schema class adds them, each in the door's own error shape (`error_serializer`).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from rest_framework.permissions import AllowAny

from nanoclone.api.envelope import ERROR_ENVELOPE


class DocumentedErrors(AutoSchema):
    error_serializer: Any = ERROR_ENVELOPE

    def error_codes(self) -> list[int]:
        codes = [400]  # bad query parameters or body, whatever the operation
        if not any(isinstance(p, AllowAny) for p in self.view.get_permissions()):
            codes += [401, 403]
        if "{" in self.path or self._is_list_view():
            codes.append(404)  # an unknown id, or a page past the last
        if self.method in ("POST", "PUT", "PATCH"):
            codes += [413, 415]
        codes.append(503)  # the database busy or out of reach (nanoclone.databases), with Retry-After
        return codes

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        for code in self.error_codes():
            if str(code) not in responses:
                responses[str(code)] = self._get_response_for_code(self.error_serializer, str(code))
        return responses
