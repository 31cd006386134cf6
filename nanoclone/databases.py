"""When the database or the media store, not the request, is why a request failed: every door
answers 503 with Retry-After, not 500."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from django.db import OperationalError, connection
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from gallery import storage

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


def outage(error: BaseException) -> str | None:
    """What to tell the caller when the database or the media store is out of reach for now (the
    store logs its own warning), else None."""
    if isinstance(error, storage.StoreUnavailable):
        return storage.StoreUnavailable.message
    return MESSAGE if noted(error) else None


# Any fixed number: the advisory lock every host takes to migrate (pg_advisory_lock).
MIGRATION_LOCK = 0x4E414E4F


@contextmanager
def migrating_alone() -> Iterator[None]:
    """Hosts starting together on one PostgreSQL migrate one after the other: the first migrates, the
    others wait for it, then find nothing left to do. (SQLite is one host's.)"""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK])


class DatabaseUnavailableMiddleware:
    """The pages' 503 (the database or the store): a page of its own, since base.html would ask the
    database for the user."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        message = outage(exception)
        if message is None:
            return None
        response = HttpResponse(render_to_string("503.html", {"message": message}), status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
