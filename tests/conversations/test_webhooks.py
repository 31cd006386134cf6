"""Webhook delivery: signed, retried 1 s / 2 s / 4 s, every attempt recorded, through safe_fetch."""

from __future__ import annotations

import hashlib
import hmac
import socket
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from conversations import webhooks
from conversations.models import WebhookAttempt, WebhookDelivery
from conversations.safe_fetch import UnsafeURLError
from tests.conftest import Hit, Receiver

pytestmark = pytest.mark.django_db

PAYLOAD = {"job_id": "img_123", "status": "completed", "message": "Génération terminée"}


def verify(hit: Hit, secret: str) -> bool:
    """The README's verification snippet, as a receiver would run it."""
    timestamp = hit.headers["X-Webhook-Timestamp"]
    expected = "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + hit.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, hit.headers["X-Webhook-Signature"])


def send(capture: Any, url: str, **options: Any) -> WebhookDelivery:
    with capture(execute=True):
        delivery = webhooks.send(url, PAYLOAD, event="job.completed", **options)
    delivery.refresh_from_db()
    return delivery


def test_it_retries_after_1_then_2_seconds_and_records_three_attempts_with_a_valid_signature(
    receiver: Receiver, inline_tasks: None, django_capture_on_commit_callbacks: Any
) -> None:
    receiver.statuses = [500, 503]
    delivery = send(django_capture_on_commit_callbacks, receiver.url(), secret="s3cret")
    assert delivery.state == "delivered" and delivery.delivered_at is not None
    attempts = list(delivery.attempts.values_list("number", "status_code"))
    assert attempts == [(1, 500), (2, 503), (3, 200)]
    assert "HTTP 500" in delivery.attempts.get(number=1).error
    assert all(attempt.duration_ms < 10_000 for attempt in delivery.attempts.all())
    hits = receiver.hits
    assert len(hits) == 3
    assert 0.95 <= hits[1].at - hits[0].at < 1.9
    assert 1.95 <= hits[2].at - hits[1].at < 3.5
    for hit in hits:
        assert hit.json == PAYLOAD
        assert hit.headers["Content-Type"] == "application/json"
        assert hit.headers["X-Webhook-Secret"] == "s3cret"
        assert verify(hit, "s3cret")
    assert not verify(hits[0], "another secret")


def test_it_gives_up_after_four_attempts(
    receiver: Receiver, inline_tasks: None, fast_retries: None, django_capture_on_commit_callbacks: Any
) -> None:
    receiver.statuses = [500] * 10
    delivery = send(django_capture_on_commit_callbacks, receiver.url())
    assert delivery.state == "failed" and delivery.delivered_at is None
    assert delivery.attempts.count() == 4 and len(receiver.hits) == 4


def test_it_records_a_connection_failure_as_an_attempt(
    receiver: Receiver, inline_tasks: None, fast_retries: None, django_capture_on_commit_callbacks: Any
) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    delivery = send(django_capture_on_commit_callbacks, f"http://127.0.0.1:{port}/hook")
    attempt = delivery.attempts.first()
    assert delivery.state == "failed"
    assert attempt is not None and attempt.status_code is None and "connect" in attempt.error.lower()


def test_it_sends_no_secret_headers_without_a_secret(
    receiver: Receiver, inline_tasks: None, django_capture_on_commit_callbacks: Any
) -> None:
    send(django_capture_on_commit_callbacks, receiver.url())
    headers = receiver.hits[0].headers
    assert "X-Webhook-Secret" not in headers and "X-Webhook-Signature" not in headers
    assert headers["X-Webhook-Timestamp"].isdigit()


def test_it_never_delivers_twice(
    receiver: Receiver, inline_tasks: None, django_capture_on_commit_callbacks: Any
) -> None:
    delivery = send(django_capture_on_commit_callbacks, receiver.url())
    assert webhooks.deliver(str(delivery.pk)) == "delivered"
    assert len(receiver.hits) == 1 and delivery.attempts.count() == 1


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.7/hook", "http://127.0.0.1:9/hook", "http://169.254.169.254/latest/meta-data", "ftp://x.org/"],
)
def test_it_refuses_urls_into_our_own_network(url: str, settings: Any) -> None:
    settings.NANOCLONE_CALLBACK_ALLOW_HTTP = True
    with pytest.raises(UnsafeURLError):
        webhooks.send(url, PAYLOAD, event="job.completed")
    assert not WebhookDelivery.objects.exists()


def test_it_insists_on_https_when_asked_even_if_http_is_allowed(receiver: Receiver) -> None:
    with pytest.raises(UnsafeURLError):
        webhooks.send(receiver.url(), PAYLOAD, event="job.completed", require_https=True)


def test_it_keeps_the_secret_encrypted_at_rest(receiver: Receiver) -> None:
    delivery = webhooks.send(receiver.url(), PAYLOAD, event="job.completed", secret="s3cret")
    assert delivery.secret and "s3cret" not in delivery.secret


def test_the_admin_shows_every_attempt(client: Any) -> None:
    admin = get_user_model().objects.create_superuser("root", password="pw-root-123")
    delivery = WebhookDelivery.objects.create(url="https://example.com/hook", event="job.failed", payload=PAYLOAD)
    WebhookAttempt.objects.create(delivery=delivery, number=1, status_code=502, error="HTTP 502: bad", duration_ms=31)
    WebhookAttempt.objects.create(delivery=delivery, number=2, error="Could not connect", duration_ms=12)
    client.force_login(admin)
    page = client.get(f"/admin/conversations/webhookdelivery/{delivery.pk}/change/").content.decode()
    assert "HTTP 502: bad" in page and "Could not connect" in page
    listing = client.get("/admin/conversations/webhookdelivery/").content.decode()
    assert "https://example.com/hook" in listing


def test_it_trusts_the_operators_own_webhook_url_on_loopback_and_plain_http(
    receiver: Receiver, settings: Any, inline_tasks: None, django_capture_on_commit_callbacks: Any
) -> None:
    # WEBHOOK_URL=http://localhost:3000/... is the document's own example: the operator's
    # choice, so caller-URL protections (no loopback, https only) don't block it.
    settings.NANOCLONE_FETCH_ALLOW_LOOPBACK = False
    settings.NANOCLONE_CALLBACK_ALLOW_HTTP = False
    settings.WEBHOOK_URL = receiver.url()
    delivery = send(django_capture_on_commit_callbacks, receiver.url())
    assert delivery.state == "delivered" and len(receiver.hits) == 1
    with pytest.raises(UnsafeURLError):
        webhooks.send(receiver.url() + "?not-the-operators", PAYLOAD, event="job.completed")
