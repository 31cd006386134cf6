"""The keys page (staff only) and the key admin's actions, against the emulator where Gemini is asked."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from conversations import pipeline
from keys import pool
from keys.models import ApiKey, QuotaLimit, UsageRecord, quota_day

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client: Client, user: Any) -> Client:
    client.force_login(user)  # alice is staff
    return client


def test_it_is_for_staff_only(client: Client, other_user: Any) -> None:
    client.force_login(other_user)
    refused = client.get("/keys")
    assert refused.status_code == 403 and "The keys page is for staff accounts." in refused.content.decode()
    assert client.post("/keys/add", {"key": "AIzaSyNotYours"}).status_code == 403
    assert not ApiKey.objects.exists()


def test_it_shows_each_key_masked_with_status_and_todays_use(staff: Client, add_key: Any) -> None:
    busy = add_key("emu-ok-secret-0001", label="Busy", daily_limit=10)
    add_key("emu-ok-secret-0002", label="Resting", exhausted_until=timezone.now() + dt.timedelta(hours=3))
    add_key("emu-ok-secret-0003", label="Broken", invalid=True, invalid_reason="API key not valid")
    add_key("emu-ok-secret-0004", label="Off", enabled=False)
    for _ in range(3):  # three calls, each with its ledger row (what the chart counts)
        lease = pool.acquire(exclude=[k.pk for k in ApiKey.objects.exclude(pk=busy.pk)], caller=pool.Caller())
        pool.report(lease, None, pool.CallUsage(images=1))
    page = staff.get("/keys").content.decode()
    assert "emu-…0001" in page and "emu-ok-secret-0001" not in page
    assert 'value="3"' in page and "3</span> / 10" in page  # the bar and its numbers
    assert "exhausted until" in page and "API key not valid" in page and ">disabled<" in page
    assert "Requests per key per day" in page and "<rect" in page


def test_it_adds_a_key_and_never_shows_the_secret_again(staff: Client) -> None:
    response = staff.post(
        "/keys/add", {"key": "AIzaSyExampleKey123456", "label": "Team", "daily_limit": "250"}, follow=True
    )
    key = ApiKey.objects.get()
    assert (key.label, key.daily_limit, key.secret) == ("Team", 250, "AIzaSyExampleKey123456")
    body = response.content.decode()
    assert "Added AIza…3456" in body and "AIzaSyExampleKey123456" not in body


def test_it_refuses_a_duplicate_key_with_a_message(staff: Client) -> None:
    ApiKey.create("AIzaSyExampleKey123456")
    body = staff.post("/keys/add", {"key": "AIzaSyExampleKey123456"}, follow=True).content.decode()
    assert "already in the pool" in body and ApiKey.objects.count() == 1


def test_it_disables_enables_and_sets_the_limit(staff: Client, add_key: Any) -> None:
    key = add_key(invalid=True, invalid_reason="bad")
    staff.post(f"/keys/{key.pk}/toggle")
    assert ApiKey.objects.get(pk=key.pk).enabled is False
    staff.post(f"/keys/{key.pk}/toggle")
    key.refresh_from_db()
    assert key.enabled and not key.invalid  # enabling is the operator's "try it again"
    staff.post(f"/keys/{key.pk}/limit", {"daily_limit": "42"})
    assert ApiKey.objects.get(pk=key.pk).daily_limit == 42
    body = staff.post(f"/keys/{key.pk}/limit", {"daily_limit": "-1"}, follow=True).content.decode()
    assert "whole number" in body and ApiKey.objects.get(pk=key.pk).daily_limit == 42


def test_it_deletes_a_key(staff: Client, add_key: Any) -> None:
    key = add_key()
    assert staff.post(f"/keys/{key.pk}/delete").status_code == 302
    assert not ApiKey.objects.exists()


def test_it_retests_a_key_and_clears_an_old_invalid_verdict(staff: Client, add_key: Any) -> None:
    key = add_key("emu-ok-0009", invalid=True, invalid_reason="old verdict")
    body = staff.post(f"/keys/{key.pk}/test", follow=True).content.decode()
    key.refresh_from_db()
    assert "works" in body and not key.invalid and key.used_today == 0  # no generation quota spent


def test_it_retests_a_bad_key_and_marks_it_invalid(staff: Client, add_key: Any) -> None:
    key = add_key("emu-invalid-0009")
    body = staff.post(f"/keys/{key.pk}/test", follow=True).content.decode()
    key.refresh_from_db()
    assert "was rejected" in body and key.invalid and "API key not valid" in key.invalid_reason


def test_the_chart_counts_requests_per_key_per_day(staff: Client, add_key: Any) -> None:
    key = add_key(label="Charted")
    for days_ago, calls in ((2, 7), (20, 99)):  # 20 days ago is outside the chart's 14
        day = quota_day() - dt.timedelta(days=days_ago)
        UsageRecord.objects.bulk_create(UsageRecord(key=key, day=day, model="m", outcome="image") for _ in range(calls))
    page = staff.get("/keys").content.decode()
    assert "Charted: 7 requests on" in page and "99 requests" not in page and "7 in all" in page


def test_the_admin_lists_keys_and_resets_counters(admin_client: Client, add_key: Any) -> None:
    key = add_key(label="Admin key", exhausted_until=timezone.now() + dt.timedelta(hours=1))
    ApiKey.objects.filter(pk=key.pk).update(count_today=5, count_day=quota_day())
    listing = admin_client.get("/admin/keys/apikey/").content.decode()
    assert "Admin key" in listing and "5 / 500" in listing
    admin_client.post("/admin/keys/apikey/", {"action": "reset_counters", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.used_today == 0 and key.exhausted_until is None


def test_the_admin_retests_keys(admin_client: Client, add_key: Any) -> None:
    key = add_key("emu-denied-0001")
    admin_client.post("/admin/keys/apikey/", {"action": "retest", "_selected_action": [key.pk]})
    assert ApiKey.objects.get(pk=key.pk).invalid


def test_the_admin_adds_a_key_from_its_secret(admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/keys/apikey/add/",
        {"secret": "AIzaSyAdminAdded0001", "label": "x", "daily_limit": "500", "enabled": "on"},
    )
    assert response.status_code == 302
    assert ApiKey.objects.get().secret == "AIzaSyAdminAdded0001"


@pytest.mark.parametrize(
    "path", ["conversations/conversation", "conversations/message", "conversations/job", "gallery/image"]
)
def test_the_admin_lists_conversations_messages_jobs_and_images(
    admin_client: Client, add_key: Any, user: Any, path: str
) -> None:
    add_key()
    job = pipeline.start(
        pipeline.GenerationRequest(user=user, prompt="an admin's lighthouse", source="chat"), pipeline.RunMode.INLINE
    )
    listing = admin_client.get(f"/admin/{path}/")
    assert listing.status_code == 200 and "lighthouse" in listing.content.decode()
    assert admin_client.get(f"/admin/{path}/?q=lighthouse").status_code == 200
    assert job.state == "succeeded"


def test_it_adds_a_service_account_from_its_json_file_behind_a_proxy(staff: Client, emu: Any) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    account = emu.vertex.service_account("proj-page")
    upload = SimpleUploadedFile("key.json", json.dumps(account).encode(), "application/json")
    body = staff.post(
        "/keys/add",
        {
            "kind": "vertex_service_account",
            "service_account": upload,
            "location": "us-central1",
            "proxy": "http://ops:pw-hidden@10.1.1.1:3128",
        },
        follow=True,
    ).content.decode()
    key = ApiKey.objects.get()
    assert (key.kind, key.project, key.location) == ("vertex_service_account", "proj-page", "us-central1")
    assert f"Added {account['client_email']} (Vertex AI service account)" in body
    # The list shows its kind, project, location and proxy, never the private key or the proxy's password.
    assert "Vertex AI service account · us-central1" in body and "proj-page" in body
    assert "http://ops@10.1.1.1:3128" in body and "pw-hidden" not in body
    assert account["private_key"].splitlines()[1] not in body


def test_it_refuses_a_file_that_is_not_a_service_account_key_and_keeps_the_form(staff: Client) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("key.json", b'{"type": "authorized_user"}', "application/json")
    body = staff.post(
        "/keys/add", {"kind": "vertex_service_account", "service_account": upload, "label": "Cloud"}, follow=True
    ).content.decode()
    assert "not a service account key" in body and not ApiKey.objects.exists()
    assert 'value="Cloud"' in body  # what was typed comes back


def test_a_proxy_is_set_changed_and_removed_on_a_key(staff: Client, add_key: Any) -> None:
    key = add_key("emu-ok-proxied", unreachable=True)
    body = staff.post(f"/keys/{key.pk}/proxy", {"proxy": "socks5://u:pw-x@127.0.0.1:1080"}, follow=True)
    key.refresh_from_db()
    assert key.proxy == "socks5://u:pw-x@127.0.0.1:1080" and not key.unreachable  # a new route, a new chance
    assert "calls through socks5://u@127.0.0.1:1080" in body.content.decode()
    refused = staff.post(f"/keys/{key.pk}/proxy", {"proxy": "gopher://x:70"}, follow=True).content.decode()
    assert "starts with" in refused and ApiKey.objects.get(pk=key.pk).proxy.startswith("socks5://")
    staff.post(f"/keys/{key.pk}/proxy", {"proxy": ""})
    assert ApiKey.objects.get(pk=key.pk).proxy == ""


def test_the_admin_adds_a_service_account_from_its_file_and_an_express_key(admin_client: Client, emu: Any) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    account = emu.vertex.service_account("proj-admin")
    common = {"label": "", "daily_limit": "500", "enabled": "on", "proxy": "http://a:pw-admin@10.0.0.2:8080"}
    upload = SimpleUploadedFile("sa.json", json.dumps(account).encode(), "application/json")
    added = admin_client.post(
        "/admin/keys/apikey/add/", {**common, "kind": "vertex_service_account", "service_account": upload}
    )
    assert added.status_code == 302
    admin_client.post("/admin/keys/apikey/add/", {**common, "kind": "vertex_express", "secret": "AQ.express-admin"})
    listed = admin_client.get("/admin/keys/apikey/").content.decode()
    kinds = dict(ApiKey.objects.values_list("kind", "project"))
    assert kinds == {"vertex_service_account": "proj-admin", "vertex_express": ""}
    assert account["client_email"] in listed and "http://a@10.0.0.2:8080" in listed and "pw-admin" not in listed


def test_quota_limits_are_shown_with_their_source_and_set_by_an_operator(staff: Client, add_key: Any) -> None:
    key = add_key("emu-ok-paced", project="proj-pace", label="Paced")
    QuotaLimit.objects.create(
        project="proj-pace",
        model="gemini-nano-banana-2.1",
        period="minute",
        learned=10,
        quota_id="GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
        learned_at=timezone.now(),
    )
    page = staff.get("/keys").content.decode()
    assert "Quota limits" in page and "10 requests per minute" in page
    assert "learned from Google&#x27;s 429 (GenerateRequestsPerMinutePerProjectPerModel-FreeTier)" in page
    body = staff.post(
        "/keys/quota-limit",
        {"scope": "project:proj-pace", "model": "gemini-nano-banana-2.1", "period": "minute", "limit": "4"},
        follow=True,
    ).content.decode()
    assert "4 requests per minute" in body and "set by an operator (Google's: 10)" in body
    staff.post("/keys/quota-limit", {"scope": f"key:{key.pk}", "model": "", "period": "day", "limit": "100"})
    assert QuotaLimit.objects.get(key=key).operator == 100
    refused = staff.post(
        "/keys/quota-limit", {"scope": "project:nobody", "model": "", "period": "day", "limit": "1"}, follow=True
    )
    assert "Choose a key or project" in refused.content.decode()
    staff.post("/keys/quota-limit", {"scope": f"key:{key.pk}", "model": "", "period": "day", "limit": ""})
    assert not QuotaLimit.objects.filter(key=key).exists()  # nothing learned there: the row goes
    staff.post(
        "/keys/quota-limit", {"scope": "project:proj-pace", "model": "gemini-nano-banana-2.1", "period": "minute"}
    )
    assert QuotaLimit.objects.get(project="proj-pace").limit == 10  # the learned one again
