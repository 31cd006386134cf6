"""The error a door gets back when a generation request can't be served as asked."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone


class InvalidRequest(ValueError):
    """The request can't be served as asked; nothing was recorded. `field` is the request's field at fault."""

    code = "invalid_request"  # what the doors call it (a 404 is their not_found)

    def __init__(self, field: str, message: str, status: int = 400):
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers every door sends with this error."""
        return {}


class BudgetExceeded(InvalidRequest):
    """The user's daily budget (images or estimated cost) is spent: 429 until the next quota day."""

    code = "budget_exceeded"

    def __init__(self, message: str, retry_after: dt.datetime):
        super().__init__("budget", message, 429)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        seconds = max(1, int((self.retry_after - timezone.now()).total_seconds()) + 1)
        return {"Retry-After": str(seconds)}
