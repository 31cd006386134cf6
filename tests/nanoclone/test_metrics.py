"""GET /metrics: off by default, for staff tokens and configured addresses, scraped and parsed with
prometheus-client's own parser; counts of several processes add up (multiprocess mode); what the
batch price saved is counted as its ledger rows are stored."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import transaction
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.authtoken.models import Token

from conversations import pipeline
from conversations.models import Job, WebhookDelivery
from keys import pool
from keys.models import ApiKey, KeyRest, UsageRecord

pytestmark = pytest.mark.django_db


@pytest.fixture
def metrics_on(settings: Any) -> None:
    settings.METRICS_ENABLED = True
    settings.METRICS_ALLOWED_IPS = []


def scrape(client: Client, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def staff_token(user: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {Token.objects.create(user=user).key}"}


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_are_off_by_default(client: Client, user: Any) -> None:
    assert client.get("/metrics", headers=staff_token(user)).status_code == 404


def test_only_staff_tokens_and_allowed_addresses_may_scrape(
    metrics_on: None, client: Client, user: Any, other_user: Any, settings: Any
) -> None:
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", headers=staff_token(other_user)).status_code == 403  # not staff
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 403
    assert client.get("/metrics", headers=staff_token(user)).status_code == 200
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1"]  # the test client's REMOTE_ADDR
    assert client.get("/metrics").status_code == 200


def test_generations_calls_429s_and_latencies_are_counted(
    metrics_on: None, client: Client, user: Any, add_key: Any
) -> None:
    headers = staff_token(user)
    before = scrape(client, **headers)
    add_key("emu-429-aaaa")
    add_key("emu-ok-bbbb")
    job = pipeline.start(
        pipeline.GenerationRequest(user=user, prompt="a kite", source="openai"), pipeline.RunMode.INLINE
    )
    assert job.state == Job.State.SUCCEEDED
    after = scrape(client, **headers)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    model = "gemini-nano-banana-2.1"
    studio = {"credential": "ai_studio"}
    assert grew("nanoclone_upstream_calls_total", model=model, door="openai", outcome="image", **studio) == 1
    assert grew("nanoclone_upstream_calls_total", model=model, door="openai", outcome="429", **studio) == 1
    quota = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
    assert grew("nanoclone_quota_exhausted_total", quota_id=quota, model=model) == 1
    assert grew("nanoclone_upstream_latency_seconds_count", model=model, outcome="image") == 1
    assert grew("nanoclone_upstream_latency_seconds_bucket", model=model, outcome="image", le="+Inf") == 1
    assert grew("nanoclone_generations_total", model=model, door="openai", outcome="succeeded") == 1
    assert grew("nanoclone_generation_seconds_count", model=model, door="openai") == 1
    assert value(after, "nanoclone_usable_keys", model=model, **studio) == 1  # the spent key rests for this model
    assert value(after, "nanoclone_usable_keys", model="gemini-3-pro-image", **studio) == 2
    assert value(after, "nanoclone_usable_keys", model=model, credential="vertex_express") == 0
    assert value(after, "nanoclone_key_rests", model=model, kind=KeyRest.Kind.DAY) == 1


def test_queue_depth_and_the_oldest_pending_job(metrics_on: None, client: Client, user: Any) -> None:
    for age in (120, 5):
        job = pipeline.submit(pipeline.GenerationRequest(user=user, prompt="later"))
        Job.objects.filter(pk=job.pk).update(created_at=timezone.now() - dt.timedelta(seconds=age))
    samples = scrape(client, **staff_token(user))
    assert value(samples, "nanoclone_queue_depth") == 2
    assert 120 <= value(samples, "nanoclone_oldest_pending_job_seconds") < 180
    assert value(samples, "nanoclone_webhook_deliveries_total", outcome="delivered") == 0


def test_running_jobs_and_webhook_deliveries_by_outcome(metrics_on: None, client: Client, user: Any) -> None:
    running = pipeline.submit(pipeline.GenerationRequest(user=user, prompt="now"))
    Job.objects.filter(pk=running.pk).update(state=Job.State.RUNNING)
    for state in ("delivered", "delivered", "failed", "pending"):
        WebhookDelivery.objects.create(url="https://hooks.example/x", event="job.completed", payload={}, state=state)
    samples = scrape(client, **staff_token(user))
    assert value(samples, "nanoclone_jobs_running") == 1
    assert value(samples, "nanoclone_queue_depth") == 0
    assert value(samples, "nanoclone_oldest_pending_job_seconds") == 0
    assert value(samples, "nanoclone_webhook_deliveries_total", outcome="delivered") == 2
    assert value(samples, "nanoclone_webhook_deliveries_total", outcome="failed") == 1
    assert value(samples, "nanoclone_webhook_deliveries_pending") == 1


def test_what_the_batch_price_saved_is_counted_once_its_ledger_rows_are_stored(
    metrics_on: None,
    client: Client,
    user: Any,
    add_key: Any,
    default_prices: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    headers = staff_token(user)
    before = scrape(client, **headers)
    add_key("emu-ok-aaaa")
    model = "gemini-nano-banana-2.1"

    def call(tier: str, images: int) -> None:
        lease = replace(pool.Lease.of(ApiKey.objects.get(), model), caller=pool.Caller(user.pk, "jobs", "", "1K", tier))
        pool.report(lease, None, pool.CallUsage(images=images))

    with django_capture_on_commit_callbacks(execute=True):
        call("batch", 2)  # $0.0672 at the standard price, $0.0336 at the batch price
        call("standard", 1)  # saves nothing
        with contextlib.suppress(RuntimeError), transaction.atomic():
            call("batch", 5)  # a collection rolled back: its rows are not stored, nor counted
            raise RuntimeError
    after = scrape(client, **headers)
    labels = {"model": model, "door": "jobs", "credential": "ai_studio"}
    saved = value(after, "nanoclone_cost_saved_usd_total", **labels) - value(
        before, "nanoclone_cost_saved_usd_total", **labels
    )
    assert saved == pytest.approx(0.0336)
    assert UsageRecord.objects.filter(tier="batch").count() == 1


BUMP = """
import django
django.setup()
from keys import metrics
metrics.observe_call("m", "api", "image", "ai_studio", "", 1500)
"""


def test_counts_of_several_processes_add_up(
    metrics_on: None, client: Client, user: Any, tmp_path: Path, settings: Any
) -> None:
    """Each web or django-q2 worker writes its counts to NANOCLONE_DATA_DIR/metrics; /metrics adds them up."""
    env = {**os.environ, "NANOCLONE_METRICS": "1", "NANOCLONE_DATA_DIR": str(tmp_path)}
    env["DJANGO_SETTINGS_MODULE"] = "nanoclone.settings"
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    for _ in range(2):
        subprocess.run([sys.executable, "-c", BUMP], env=env, cwd=django_settings.BASE_DIR, check=True, timeout=60)
    assert len(list((tmp_path / "metrics").glob("counter_*.db"))) == 2  # one file per process
    settings.METRICS_MULTIPROC_DIR = str(tmp_path / "metrics")  # as settings read it in those processes
    samples = scrape(client, **staff_token(user))
    assert (
        value(samples, "nanoclone_upstream_calls_total", model="m", door="api", outcome="image", credential="ai_studio")
        == 2
    )
    assert value(samples, "nanoclone_upstream_latency_seconds_bucket", model="m", outcome="image", le="2.0") == 2
    assert value(samples, "nanoclone_queue_depth") == 0  # the scrape-time figures are there too
