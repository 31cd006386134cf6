"""A database that is busy or out of reach is a 503 in each door's own shape, with Retry-After:
never a 500 "internal error" (PostgreSQL's pool ran dry under load once, and every door said 500).

The drivers' errors are real ones, made here (an SQLite file locked by another connection,
psycopg refused by a port nobody listens on, psycopg_pool timing out); Django's execute_wrapper
raises them from the request's first query, wrapped as Django wraps them."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import psycopg_pool
import pytest
import requests
from django.db import IntegrityError, OperationalError, connection
from django.db.backends.signals import connection_created
from django.test import Client
from rest_framework.test import APIClient

from nanoclone import databases
from nanoclone.dialects import jobs
from tests.nanoclone.test_mcp import call, failed, token_for


def _locked_sqlite(tmp_path: Path) -> sqlite3.OperationalError:
    path = tmp_path / "locked.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        sqlite3.connect(path, timeout=0).execute("SELECT * FROM t")
    except sqlite3.OperationalError as error:
        return error
    finally:
        holder.close()
    raise AssertionError("the exclusive lock let a reader through")


def _missing_table() -> sqlite3.OperationalError:
    try:
        sqlite3.connect(":memory:").execute("SELECT * FROM no_such_table")
    except sqlite3.OperationalError as error:
        return error
    raise AssertionError("unreachable")


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _postgresql_refused() -> psycopg.OperationalError:
    try:
        psycopg.connect(f"host=127.0.0.1 port={_unused_port()} connect_timeout=2")
    except psycopg.OperationalError as error:
        return error
    raise AssertionError("something listens on a free port")


def _pool_timeout() -> psycopg_pool.PoolTimeout:
    pool = psycopg_pool.ConnectionPool(
        f"host=127.0.0.1 port={_unused_port()} connect_timeout=2", min_size=1, timeout=0.2, open=True
    )
    try:
        pool.getconn()
    except psycopg_pool.PoolTimeout as error:
        return error
    finally:
        pool.close()
    raise AssertionError("a pool with no server handed out a connection")


def _as_django_raises(cause: Exception) -> Exception:
    """The error as Django's DatabaseErrorWrapper raises it: its own class, from the driver's."""
    wrapped = (IntegrityError if isinstance(cause, sqlite3.IntegrityError) else OperationalError)(*cause.args)
    wrapped.__cause__ = cause
    return wrapped


@pytest.fixture(params=["sqlite locked", "postgresql refused", "pool timeout"])
def outage(request: pytest.FixtureRequest, tmp_path: Path) -> Exception:
    makers: dict[str, Callable[[], Exception]] = {
        "sqlite locked": lambda: _locked_sqlite(tmp_path),
        "postgresql refused": _postgresql_refused,
        "pool timeout": _pool_timeout,
    }
    return _as_django_raises(makers[request.param]())


@contextmanager
def queries_fail(error: Exception) -> Iterator[None]:
    def fail(*args: Any) -> None:
        raise error

    with connection.execute_wrapper(fail):
        yield


@contextmanager
def new_connections_fail(error: Exception) -> Iterator[None]:
    """queries_fail for the connections other threads open meanwhile (the MCP tools' worker threads)."""
    wrapped: list[Any] = []

    def fail(*args: Any) -> None:
        raise error

    def wrap(sender: Any, connection: Any, **kwargs: Any) -> None:
        connection.execute_wrappers.append(fail)
        wrapped.append(connection)

    connection_created.connect(wrap)
    try:
        yield
    finally:
        connection_created.disconnect(wrap)
        for opened in wrapped:  # the thread's wrapper object outlives its connection
            opened.execute_wrappers.remove(fail)


def test_busy_or_unreachable_databases_are_unavailable_and_bugs_are_not(outage: Exception) -> None:
    assert databases.unavailable(outage)
    assert not databases.unavailable(_as_django_raises(_missing_table()))
    assert not databases.unavailable(IntegrityError("UNIQUE constraint failed"))
    assert not databases.unavailable(RuntimeError("database is locked"))


DOORS = [
    # (path, what the door's error body looks like)
    ("/api/conversations", lambda body: body["error"]["code"] == "database_unavailable" and not body["success"]),
    ("/api/images/status/img_00000000000000000000000000000000", lambda body: body["detail"] == body["message"]),
    ("/v1beta/models", lambda body: body["error"]["status"] == "UNAVAILABLE" and body["error"]["details"]),
    ("/openai/v1/models", lambda body: body["error"]["code"] == "database_unavailable"),
    ("/v1/tasks/task-unknown", lambda body: body["error"]["code"] == 503),
    ("/api/v1/runs/00000000-0000-0000-0000-000000000000", lambda body: body["error"]["status"] == 503),
    ("/nano-banana/tasks?id=00000000-0000-0000-0000-000000000000", lambda body: body["success"] is False),
]


@pytest.mark.parametrize(("path", "shaped"), DOORS, ids=[door[0].split("?")[0] for door in DOORS])
def test_every_door_answers_503_in_its_own_shape(
    api: APIClient, outage: Exception, path: str, shaped: Callable[[dict[str, Any]], bool]
) -> None:
    with queries_fail(outage):
        response = api.get(path)
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == str(databases.RETRY_AFTER_SECONDS)
    assert shaped(response.json()), response.content
    said = jobs.DATABASE_UNAVAILABLE if path.startswith("/api/images/") else databases.MESSAGE  # jobs: French
    assert said in response.content.decode()


def test_a_page_answers_a_page_of_its_own(client: Client, user: Any, outage: Exception) -> None:
    client.force_login(user)
    with queries_fail(outage):
        response = client.get("/gallery")
    assert response.status_code == 503
    assert response["Retry-After"] == str(databases.RETRY_AFTER_SECONDS)
    assert "Busy for a moment" in response.content.decode()


def test_a_bug_in_a_query_stays_a_logged_500(api: APIClient, caplog: pytest.LogCaptureFixture) -> None:
    with queries_fail(_as_django_raises(_missing_table())):
        response = api.get("/api/conversations")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal"
    assert "Unhandled error" in caplog.text


def test_the_503_is_logged_as_a_warning_with_its_reason_and_a_500_stays_an_error(
    api: APIClient, outage: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    with queries_fail(outage):
        assert api.get("/api/conversations").status_code == 503
    logged = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert ("django.request", "WARNING", "Service Unavailable: /api/conversations") in logged
    assert any(name == "nanoclone.databases" and level == "WARNING" for name, level, _ in logged)  # the reason
    assert not [entry for entry in logged if entry[1] == "ERROR"], logged
    caplog.clear()
    with queries_fail(_as_django_raises(_missing_table())):
        assert api.get("/api/conversations").status_code == 500
    assert ("django.request", "ERROR", "Internal Server Error: /api/conversations") in [
        (r.name, r.levelname, r.getMessage()) for r in caplog.records
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("tool", "arguments"), [("generate_image", {"prompt": "a kite"}), ("list_images", {})])
def test_an_mcp_tool_says_to_retry(user: Any, outage: Exception, tool: str, arguments: dict[str, Any]) -> None:
    with new_connections_fail(outage):
        said = failed(call(user, tool, **arguments))
    assert said.endswith(f": {databases.MESSAGE} (retry in {databases.RETRY_AFTER_SECONDS} s)"), said


def test_the_mcp_endpoint_answers_503_when_it_cannot_check_the_token(live_app: str, user: Any) -> None:
    token = token_for(user)
    with new_connections_fail(_as_django_raises(_postgresql_refused())):
        response = requests.post(f"{live_app}/mcp", headers={"Authorization": f"Bearer {token}"}, json={}, timeout=10)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(databases.RETRY_AFTER_SECONDS)
    assert response.json()["error"] == {"code": "database_unavailable", "message": databases.MESSAGE}
