"""Prometheus counters of upstream calls, incremented where the ledger row is written (pool.report),
and of the USD the Batch API's price saved.

With NANOCLONE_METRICS on, settings point PROMETHEUS_MULTIPROC_DIR into the data directory before
prometheus_client is imported, so the web workers and the django-q2 workers each write their
counts there and /metrics adds them up (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from prometheus_client import Counter, Histogram

# Gemini image calls take seconds; a 429 or a refusal comes back in milliseconds.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)

UPSTREAM_CALLS = Counter(
    "nanoclone_upstream_calls",
    "Gemini calls by model, door, outcome (image, refused, 429, rejected, failed) and credential kind"
    " (ai_studio, vertex_express, vertex_service_account); retries are calls too.",
    ["model", "door", "outcome", "credential"],
)
UPSTREAM_LATENCY = Histogram(
    "nanoclone_upstream_latency_seconds",
    "How long one Gemini call took.",
    ["model", "outcome"],
    buckets=LATENCY_BUCKETS,
)
COST_SAVED = Counter(
    "nanoclone_cost_saved_usd",
    "USD the batch price saved: what the standard tier would have cost more, by model, door and credential kind.",
    ["model", "door", "credential"],
)
QUOTA_EXHAUSTED = Counter(
    "nanoclone_quota_exhausted", "Gemini 429 RESOURCE_EXHAUSTED answers by quota id and model.", ["quota_id", "model"]
)


def observe_call(model: str, door: str, outcome: str, credential: str, quota_id: str, latency_ms: int | None) -> None:
    UPSTREAM_CALLS.labels(model, door, outcome, credential).inc()
    if latency_ms is not None:
        UPSTREAM_LATENCY.labels(model, outcome).observe(latency_ms / 1000)
    if outcome == "429":
        QUOTA_EXHAUSTED.labels(quota_id or "unknown", model).inc()


def observe_saving(model: str, door: str, credential: str, saved: Decimal) -> None:
    """What the batch price saved on a call, counted once the ledger row's transaction commits: a
    batch collected again after a rollback counts once."""
    if saved > 0:
        transaction.on_commit(lambda: COST_SAVED.labels(model, door, credential).inc(float(saved)))
