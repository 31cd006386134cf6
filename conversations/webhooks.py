"""Signed, retried webhook delivery, shared by the jobs API's global webhook and per-request callbacks.

send() validates the URL (safe_fetch), records a WebhookDelivery and queues deliver() on the
cluster. deliver() posts through safe_fetch.post_json (pinned, checked address), waiting 1 s,
2 s, 4 s between attempts; every attempt is recorded. A 2xx ends it.

Headers: Content-Type: application/json, X-Webhook-Timestamp (unix seconds),
X-Webhook-Signature: "sha256=" + hex HMAC-SHA256(secret, f"{timestamp}.{body}") and the
plain X-Webhook-Secret the jobs API document asks for; the last two only when a secret is set.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import time
from typing import Any

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from conversations import safe_fetch
from conversations.background import enqueue_on_commit, release_connection
from conversations.models import Job, WebhookAttempt, WebhookDelivery
from keys import crypto

log = logging.getLogger(__name__)


def send(
    url: str,
    payload: dict[str, Any],
    *,
    event: str,
    job: Job | None = None,
    secret: str = "",
    require_https: bool = False,
) -> WebhookDelivery:
    """Record a delivery of `payload` to `url` and queue it (on commit). Raises UnsafeURLError.

    require_https=True insists on https whatever the settings; False follows
    NANOCLONE_CALLBACK_ALLOW_HTTP (https unless development allows http).
    """
    checked = safe_fetch.check_callback_url(
        url, require_https=True if require_https else None, trusted=_is_operator_url(url)
    )
    delivery = WebhookDelivery.objects.create(
        url=checked,
        event=event,
        payload=payload,
        job=job,
        secret=crypto.encrypt(secret) if secret else "",
    )
    enqueue_on_commit("conversations.webhooks.deliver", str(delivery.pk), task_name=f"webhook-{delivery.pk}")
    return delivery


def _is_operator_url(url: str) -> bool:
    """The global WEBHOOK_URL is the operator's own choice (often on localhost or a private
    network), so the SSRF address checks meant for caller-supplied URLs don't apply to it."""
    return bool(settings.WEBHOOK_URL) and url.strip() == settings.WEBHOOK_URL.strip()


def body_of(payload: dict[str, Any]) -> bytes:
    """The exact bytes sent (and signed): compact UTF-8 JSON."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def headers_for(secret: str, body: bytes, timestamp: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "X-Webhook-Timestamp": timestamp}
    if secret:
        headers["X-Webhook-Secret"] = secret
        headers["X-Webhook-Signature"] = signature(secret, timestamp, body)
    return headers


def _lease_seconds() -> int:
    # Like a job's lease: django-q2 kills a task after `timeout` and hands it out again after
    # `retry` (> timeout), so a redelivered task finds a dead worker's lease expired. Every
    # attempt and pause (4 x 10 s + 7 s by default) fits well within the default timeout.
    return int(settings.Q_CLUSTER["timeout"])  # type: ignore[call-overload]


def deliver(delivery_id: str) -> str:
    """django-q2 task: post a delivery until a 2xx or the attempts run out. Safe to run twice."""
    now = timezone.now()
    claimed = (
        WebhookDelivery.objects.filter(pk=delivery_id, state=WebhookDelivery.State.PENDING)
        .exclude(lease_until__gt=now)
        .update(lease_until=now + dt.timedelta(seconds=_lease_seconds()))
    )
    delivery = WebhookDelivery.objects.filter(pk=delivery_id).first()
    if delivery is None:
        return "gone"
    if not claimed:
        return delivery.state  # done, or another worker is on it
    secret = crypto.decrypt(delivery.secret) if delivery.secret else ""
    body = body_of(delivery.payload)
    delays = settings.WEBHOOK_RETRY_DELAYS
    # A task redelivered after a crash carries on from the attempts already made.
    number = delivery.attempts.count()
    while number <= len(delays):
        release_connection()  # through the retry's delay and the receiver's answer
        if number:
            time.sleep(delays[number - 1])
        number += 1
        if _attempt(delivery, number, secret, body):
            return _finish(delivery, WebhookDelivery.State.DELIVERED)
    return _finish(delivery, WebhookDelivery.State.FAILED)


def _attempt(delivery: WebhookDelivery, number: int, secret: str, body: bytes) -> bool:
    timestamp = str(int(time.time()))
    started = time.monotonic()
    status_code: int | None = None
    error = ""
    try:
        status_code, excerpt = safe_fetch.post_json(
            delivery.url,
            body,
            headers_for(secret, body, timestamp),
            settings.WEBHOOK_TIMEOUT_SECONDS,
            trusted=_is_operator_url(delivery.url),
        )
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}: {excerpt[:500]}"
    except (safe_fetch.UnsafeURLError, safe_fetch.FetchError) as failure:
        error = str(failure)
    duration_ms = int((time.monotonic() - started) * 1000)
    WebhookAttempt.objects.create(
        delivery=delivery, number=number, status_code=status_code, error=error, duration_ms=duration_ms
    )
    if error:
        log.info("Webhook %s attempt %s to %s failed: %s", delivery.pk, number, delivery.url, error)
    return not error


def _finish(delivery: WebhookDelivery, state: str) -> str:
    delivered_at = timezone.now() if state == WebhookDelivery.State.DELIVERED else None
    WebhookDelivery.objects.filter(pk=delivery.pk).update(state=state, lease_until=None, delivered_at=delivered_at)
    if state == WebhookDelivery.State.FAILED:
        log.warning("Webhook %s to %s failed after every attempt", delivery.pk, delivery.url)
    return state


def deliveries_by_state() -> dict[str, int]:
    """How many deliveries are pending, delivered and failed (every state, 0 when it has none)."""
    counted = dict(WebhookDelivery.objects.values_list("state").annotate(n=Count("id")).values_list("state", "n"))
    return {state.value: counted.get(state.value, 0) for state in WebhookDelivery.State}
