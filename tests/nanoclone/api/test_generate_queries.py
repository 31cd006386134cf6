"""What one synchronous POST /api/generate costs the database, counted so that it only goes down.

Issue 14 aims at 8 statements in 2 write transactions: one transaction before the call to Gemini
(the key's use, the conversation, the prompt, the job already claimed) and one after it (the answer,
the job's success, the ledger row, the image). The token is read from the process's cache.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

pytestmark = pytest.mark.django_db(transaction=True)

MAX_STATEMENTS = 8  # 29 when issue 14 was filed, 22 before the claim and the key went into the first transaction
MAX_WRITE_TRANSACTIONS = 2


def costs(sql: list[str]) -> tuple[int, int]:
    """Statements (BEGIN and COMMIT aside) and write transactions (explicit ones, and each write in autocommit)."""
    statements = writes = 0
    inside = False
    for statement in sql:
        verb = statement.split(None, 1)[0].upper()
        if verb == "BEGIN":
            inside, writes = True, writes + 1
        elif verb in {"COMMIT", "ROLLBACK"}:
            inside = False
        else:
            statements += 1
            writes += verb in {"INSERT", "UPDATE", "DELETE"} and not inside
    return statements, writes


@pytest.mark.skipif(connection.vendor != "sqlite", reason="PostgreSQL's BEGIN is not a captured statement")
@pytest.mark.parametrize("headers", [{}, {"HTTP_IDEMPOTENCY_KEY": "retry-safe-1"}], ids=["plain", "idempotent"])
def test_a_synchronous_generation_stays_within_its_statement_budget(
    api: Any, add_key: Any, headers: dict[str, str]
) -> None:
    add_key()
    assert api.post("/api/generate", {"prompt": "warm up"}, format="json").status_code == 200
    with CaptureQueriesContext(connection) as queries:
        response = api.post("/api/generate", {"prompt": "a lighthouse at dusk"}, format="json", **headers)
    assert response.status_code == 200 and response.json()["data"]["message"]["imageBase64"]
    sql = [query["sql"] for query in queries.captured_queries]
    statements, writes = costs(sql)
    listing = "\n".join(statement[:100] for statement in sql)
    assert statements <= MAX_STATEMENTS, f"{statements} statements:\n{listing}"
    assert writes <= MAX_WRITE_TRANSACTIONS, f"{writes} write transactions:\n{listing}"
