"""GET /metrics: Prometheus metrics, off unless NANOCLONE_METRICS; open to staff API tokens and to
the client addresses in NANOCLONE_METRICS_ALLOWED_IPS.

Counters and histograms are counted where things happen, in the process that does them: upstream
calls in keys.pool.report and the batch price's savings as ledger rows are stored (keys.metrics),
finished generations here from the job_finished signal. With metrics on, prometheus-client's
multiprocess mode adds up the counts of every web worker and django-q2 worker (settings set
PROMETHEUS_MULTIPROC_DIR). What the pool and the queue look like now (usable keys, rests, queue
depth, oldest pending job, webhook deliveries) is read at scrape time by PoolCollector, from
keys.pool, conversations.pipeline and conversations.webhooks, so it is right whichever process
answers.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from conversations import pipeline, webhooks
from conversations.models import Job, WebhookDelivery
from conversations.signals import job_finished
from keys import pool
from keys.catalogue import MODELS
from keys.metrics import LATENCY_BUCKETS
from keys.models import ApiKey
from nanoclone.api.auth import KEYWORDS, user_for_token

GENERATIONS = Counter(
    "nanoclone_generations",
    "Finished generation requests (jobs) by model, door and outcome (succeeded, or why they failed).",
    ["model", "door", "outcome"],
)
GENERATION_SECONDS = Histogram(
    "nanoclone_generation_seconds",
    "End to end: from the request's arrival to its job's end (queueing, waits for keys and retries included).",
    ["model", "door"],
    buckets=LATENCY_BUCKETS,
)


def on_job_finished(sender: Any, job: Job, **kwargs: Any) -> None:
    outcome = "succeeded" if job.state == Job.State.SUCCEEDED else (job.error_code or job.state)
    GENERATIONS.labels(job.model, job.source, outcome).inc()
    if job.finished_at:
        GENERATION_SECONDS.labels(job.model, job.source).observe((job.finished_at - job.created_at).total_seconds())


job_finished.connect(on_job_finished, dispatch_uid="nanoclone-metrics")


class PoolCollector(Collector):
    """The key pool, the queue and webhook deliveries as they are now, read at scrape time."""

    def collect(self) -> Iterator[Metric]:
        usable = GaugeMetricFamily(
            "nanoclone_usable_keys",
            "Credentials usable now for each model, by kind (ai_studio, vertex_express, vertex_service_account).",
            labels=["model", "credential"],
        )
        for model in MODELS:
            by_kind = Tally(pool.usable_keys(model).values_list("kind", flat=True))
            for kind in ApiKey.Kind.values:
                usable.add_metric([model, kind], by_kind[kind])
        yield usable
        rests = GaugeMetricFamily(
            "nanoclone_key_rests",
            "Models resting on a key or project (a spent quota), by kind.",
            labels=["model", "kind"],
        )
        for (model, kind), count in pool.rest_counts().items():
            rests.add_metric([model, kind], count)
        yield rests
        queue = pipeline.queue_now()
        yield GaugeMetricFamily("nanoclone_queue_depth", "Jobs waiting to start.", value=queue.pending)
        oldest = (timezone.now() - queue.oldest_pending_at).total_seconds() if queue.oldest_pending_at else 0
        yield GaugeMetricFamily("nanoclone_oldest_pending_job_seconds", "Age of the oldest waiting job.", value=oldest)
        yield GaugeMetricFamily("nanoclone_jobs_running", "Jobs being generated now.", value=queue.running)
        deliveries = webhooks.deliveries_by_state()
        finished = CounterMetricFamily(
            "nanoclone_webhook_deliveries", "Webhook and callback deliveries by outcome.", labels=["outcome"]
        )
        for state in (WebhookDelivery.State.DELIVERED, WebhookDelivery.State.FAILED):
            finished.add_metric([state], deliveries[state])
        yield finished
        yield GaugeMetricFamily(
            "nanoclone_webhook_deliveries_pending",
            "Deliveries still being attempted.",
            value=deliveries[WebhookDelivery.State.PENDING],
        )


_pool_registry = CollectorRegistry(auto_describe=False)
_pool_registry.register(PoolCollector())


def allowed(request: HttpRequest) -> bool:
    if request.META.get("REMOTE_ADDR", "") in settings.METRICS_ALLOWED_IPS:
        return True
    parts = request.headers.get("Authorization", "").split()
    if len(parts) != 2 or parts[0].lower().encode() not in KEYWORDS:
        return False
    user = user_for_token(parts[1])
    return user is not None and user.is_staff


def metrics(request: HttpRequest) -> HttpResponse:
    if not settings.METRICS_ENABLED:
        raise Http404("Metrics are off (NANOCLONE_METRICS).")
    if not allowed(request):
        return HttpResponse(
            "Metrics are for staff API tokens (Authorization: Bearer <token>) and NANOCLONE_METRICS_ALLOWED_IPS.\n",
            status=403,
            content_type="text/plain",
        )
    if settings.METRICS_MULTIPROC_DIR:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=settings.METRICS_MULTIPROC_DIR)  # every process's, added up
        counted = generate_latest(registry)
    else:
        counted = generate_latest(REGISTRY)
    return HttpResponse(counted + generate_latest(_pool_registry), content_type=CONTENT_TYPE_LATEST)
