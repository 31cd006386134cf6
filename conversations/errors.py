"""The error a door gets back when a generation request can't be served as asked."""

from __future__ import annotations


class InvalidRequest(ValueError):
    """The request can't be served as asked; nothing was recorded. `field` is the request's field at fault."""

    def __init__(self, field: str, message: str, status: int = 400):
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status
