"""When the database, not the request, is why a request failed: every door answers 503, not 500."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

import psycopg
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
MESSAGE = "The database is busy or out of reach; try again in a few seconds."


def unavailable(error: BaseException) -> bool:
    """Whether a database error means "busy or out of reach for now": PostgreSQL down, restarting,
    out of connections or cancelling a statement, psycopg's pool empty past its timeout
    (PoolTimeout), SQLite locked past its busy timeout. Any other database error (a missing table,
    a broken query) is a bug and stays a logged 500."""
    if not isinstance(error, OperationalError):
        return False
    cause = error.__cause__  # Django re-raises the driver's error from the original
    if isinstance(cause, sqlite3.OperationalError):
        return cause.sqlite_errorname.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
    return isinstance(cause, psycopg.OperationalError)  # PostgreSQL's "operator or resource" classes


def noted(error: BaseException) -> bool:
    """unavailable(), logged once for the operator when true (a warning: nothing to fix in the code)."""
    if not unavailable(error):
        return False
    log.warning("Database unavailable, asked the caller to retry: %s", error)
    return True


class DatabaseUnavailableMiddleware:
    """The pages' 503: a page of its own, since base.html would ask the database for the user."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not noted(exception):
            return None
        response = HttpResponse(render_to_string("503.html", {"message": MESSAGE}), status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
