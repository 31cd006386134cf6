"""GET /api/usage, the keys page's and the admin's usage panels, and `manage.py usage`, with what
the batch price saved."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from conversations import pipeline
from conversations.models import Job
from keys import pool
from keys.models import ApiKey, UsageRecord, quota_day

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("default_prices")]


def generate(user: Any, source: str, **fields: Any) -> None:
    request = pipeline.GenerationRequest(user=user, prompt="a lighthouse", source=source, **fields)
    assert pipeline.start(request, pipeline.RunMode.INLINE).state == Job.State.SUCCEEDED


@pytest.fixture
def traffic(user: Any, other_user: Any, add_key: Any) -> None:
    """alice: two Nano Banana 2.1 images by the API and a Pro 4K one by evolink; bob: one Nano
    Banana 2 image through MCP. The spent key, least used, answers 429 first for each model."""
    add_key("emu-429-aaaa", label="spent", project="p1")
    add_key("emu-ok-bbbb", label="fresh", project="p2")
    generate(user, "api")
    generate(user, "api")
    generate(user, "evolink", model="gemini-3-pro-image", resolution="4K")
    generate(other_user, "mcp", model="gemini-3.1-flash-image")


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {Token.objects.get_or_create(user=user)[0].key}")
    return client


def rows(response: Any) -> dict[str, tuple[int, int]]:
    assert response.status_code == 200, response.content
    return {row["group"]: (row["calls"], row["images"]) for row in response.json()["data"]["rows"]}


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        ("model", {"gemini-nano-banana-2.1": (3, 2), "gemini-3-pro-image": (2, 1), "gemini-3.1-flash-image": (2, 1)}),
        ("door", {"api": (3, 2), "evolink": (2, 1), "mcp": (2, 1)}),
        ("user", {"alice": (5, 3), "bob": (2, 1)}),
        ("project", {"p2": (4, 4), "p1": (3, 0)}),
    ],
)
def test_staff_see_everyones_usage_grouped(
    traffic: None, user: Any, group_by: str, expected: dict[str, tuple[int, int]]
) -> None:
    response = client_for(user).get("/api/usage", {"group_by": group_by})
    assert rows(response) == expected
    assert response.json()["data"]["scope"] == "all"


def test_grouped_by_key_and_day_with_429s_and_the_total_cost(traffic: None, user: Any) -> None:
    by_key = client_for(user).get("/api/usage", {"group_by": "key"}).json()["data"]
    spent = next(row for row in by_key["rows"] if row["group"].startswith("spent"))
    assert (spent["calls"], spent["images"], spent["exhausted"], spent["cost"]) == (3, 0, 3, 0)
    total = sum((r.cost for r in UsageRecord.objects.all()), Decimal(0))
    assert Decimal(str(by_key["total"]["cost"])) == total and by_key["total"]["images"] == 4
    today = str(quota_day())
    assert rows(client_for(user).get("/api/usage", {"group_by": "day"})) == {today: (7, 4)}


def test_everyone_else_sees_only_their_own(traffic: None, other_user: Any) -> None:
    response = client_for(other_user).get("/api/usage", {"group_by": "user"})
    assert rows(response) == {"bob": (2, 1)} and response.json()["data"]["scope"] == "own"


def test_the_span_is_from_to_in_quota_days(traffic: None, user: Any) -> None:
    yesterday = quota_day() - dt.timedelta(days=1)
    response = client_for(user).get("/api/usage", {"from": "2020-01-01", "to": str(yesterday)})
    assert response.status_code == 400  # more than a year
    assert rows(client_for(user).get("/api/usage", {"from": str(yesterday), "to": str(yesterday)})) == {}
    assert rows(client_for(user).get("/api/usage", {"to": "0001-01-05"})) == {}  # the first days of the calendar


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"group_by": "colour"}, "group_by"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-02-02", "to": "2026-02-01"}, "from"),
        ({"to": "0001-01-05", "from": "9999-12-31"}, "from"),
    ],
)
def test_bad_queries_are_400_in_the_envelope(user: Any, query: dict[str, str], field: str) -> None:
    response = client_for(user).get("/api/usage", query)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and error["details"]["field"] == field


def test_it_needs_a_token(client: Client) -> None:
    assert client.get("/api/usage").status_code == 401


def bars(html: str) -> list[str]:
    return re.findall(r'<span class="usage-label">([^<]+)</span>', html)


def test_the_keys_page_shows_today_and_30_days_per_key_project_model_and_kind(
    traffic: None, client: Client, user: Any
) -> None:
    client.force_login(user)
    html = client.get("/keys").content.decode()
    assert "Usage and estimated cost" in html and "Last 30 days" in html
    # Two spans, by key, project, model and kind of credential (all AI Studio keys here).
    assert html.count('class="usage-bar"') == 2 * (2 + 2 + 3 + 1)
    assert {"gemini-3-pro-image", "p1", "p2", "AI Studio API key"} <= set(bars(html))
    assert "4 images · 7 calls" in html


def test_the_admin_shows_the_same_panels_above_the_ledger(traffic: None, client: Client, user: Any) -> None:
    user.is_superuser = True
    user.save()
    client.force_login(user)
    html = client.get("/admin/keys/usagerecord/").content.decode()
    assert "Usage and estimated cost" in html and "gemini-3.1-flash-image" in bars(html)
    assert client.get("/admin/keys/price/").status_code == 200
    assert client.get("/admin/keys/budget/add/").status_code == 200


def test_manage_py_usage_prints_a_summary(traffic: None) -> None:
    out = StringIO()
    call_command("usage", "--by", "door", stdout=out)
    text = out.getvalue()
    assert re.search(r"evolink\s+2\s+1\s+1\s+0\s+\$0\.24", text), text
    assert text.strip().splitlines()[-1].startswith("4 images, 7 calls")
    assert "saved" not in text  # nothing at the batch price


def test_manage_py_usage_says_what_the_batch_price_saved(traffic: None) -> None:
    UsageRecord.objects.filter(door="evolink").update(tier="batch", saved=Decimal("0.12"))
    out = StringIO()
    call_command("usage", "--by", "tier", stdout=out)
    text = out.getvalue()
    assert re.search(r"^batch\s+2\s+1", text, re.MULTILINE), text
    assert "the batch price saved $0.2400" in text.strip().splitlines()[-1]


def test_usage_by_kind_of_credential(user: Any, add_key: Any) -> None:
    add_key("emu-ok-studio")
    add_key("emu-ok-express", kind=ApiKey.Kind.VERTEX_EXPRESS)
    generate(user, "api")
    generate(user, "api")  # least used first: one image each
    assert rows(client_for(user).get("/api/usage", {"group_by": "kind"})) == {
        "AI Studio API key": (1, 1),
        "Vertex AI express-mode API key": (1, 1),
    }


def batch_call(user: Any, images: int = 1) -> None:
    """A batch item collected: its ledger row at the Batch API's price (half), with what it saved."""
    lease = replace(
        pool.acquire_batch("gemini-nano-banana-2.1"), caller=pool.Caller(user.pk, "jobs", "", "1K", "batch")
    )
    pool.report(lease, None, pool.CallUsage(images=images))


def test_usage_by_price_tier_with_what_the_batch_price_saved(user: Any, add_key: Any) -> None:
    add_key("emu-ok-studio")
    generate(user, "api")  # 1K Nano Banana 2.1: $0.0336 at the standard price, and its prompt's tokens
    batch_call(user)
    batch_call(user, images=2)  # 3 images at $0.0168 each: $0.0504, and $0.0504 saved
    data = client_for(user).get("/api/usage", {"group_by": "tier"}).json()["data"]
    assert data["groupBy"] == "tier"
    figures = {row["group"]: (row["calls"], row["images"], row["cost"], row["saved"]) for row in data["rows"]}
    assert figures == {"batch": (2, 3, 0.0504, 0.0504), "standard": (1, 1, 0.033604, 0)}
    assert (data["total"]["cost"], data["total"]["saved"]) == (0.084004, 0.0504)
    by_door = client_for(user).get("/api/usage", {"group_by": "door"}).json()["data"]
    assert {row["group"]: row["saved"] for row in by_door["rows"]} == {"jobs": 0.0504, "api": 0}
    assert UsageRecord.objects.filter(tier="batch").count() == 2


def test_the_schema_documents_the_tier_grouping_and_saved(client: Client) -> None:
    schema = client.get("/api/schema?format=json").json()
    operation = schema["paths"]["/api/usage"]["get"]
    group_by = next(p for p in operation["parameters"] if p["name"] == "group_by")
    assert "tier" in group_by["schema"]["enum"]
    row = schema["components"]["schemas"]["UsageRow"]
    assert row["properties"]["saved"]["type"] == row["properties"]["cost"]["type"] == "number"
    assert {"saved", "cost"} <= set(row["required"])


def ledger_row(**fields: Any) -> UsageRecord:
    return UsageRecord.objects.create(
        day=quota_day(), model="gemini-nano-banana-2.1", outcome="image", images=1, **fields
    )


def test_the_keys_page_shows_what_the_batch_price_saved_only_when_it_saved(
    client: Client, user: Any, add_key: Any
) -> None:
    client.force_login(user)
    add_key()  # the page shows usage once it has keys
    ledger_row(cost=Decimal("0.0336"))
    ledger_row(cost=Decimal("0.0168"), tier="batch", saved=Decimal(0))  # NANOCLONE_PRICE_TIER=batch: nothing saved
    html = client.get("/keys").content.decode()
    assert "2 images · 2 calls · $0.05</span></h3>" in html and "Saved by the batch price" not in html
    ledger_row(cost=Decimal("1.26"), tier="batch", saved=Decimal("1.26"))
    html = client.get("/keys").content.decode()
    # Today's and the last 30 days' figures, next to their cost.
    assert html.count('$1.31 · <span class="usage-saved">Saved by the batch price: $1.26</span>') == 2
    assert "$1.2600 saved by the batch price" in html  # in the bars' titles
