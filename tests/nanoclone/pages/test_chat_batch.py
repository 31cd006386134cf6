"""The chat's "Half price, ready within 24 h": a turn recorded at Gemini's Batch API price waits for a
batch (pipeline.batches), says so, and shows its image and its price once the batch is collected."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from conversations.models import Job
from keys.models import ApiKey, UsageRecord
from tests.conftest import batch_finished, emulator_requests, jobs_settled
from tests.nanoclone.pages.test_browser import chromium, site  # noqa: F401
from tests.nanoclone.pages.test_chat_browser import shown, tab  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

HTMX = {"HX-Request": "true"}
WAITING = "Waiting for Gemini's batch · half price"


@pytest.fixture
def browser(client: Client, user: Any, settings: Any) -> Client:
    settings.CHAT_EXECUTION = "thread"  # a batch turn must not run on a thread all the same
    client.force_login(user)
    return client


def online_calls(emu: Any) -> list[dict[str, Any]]:
    return [r for r in emulator_requests(emu) if r.get("api") != "batch"]


def test_a_turn_sent_at_half_price_waits_for_a_batch_and_shows_its_price(
    browser: Client, add_key: Any, quick_batches: Any, default_prices: None
) -> None:
    add_key()
    response = browser.post("/c/send", {"prompt": "a fox in the snow", "batch": "1"}, headers=HTMX)
    assert response.status_code == 200 and WAITING in response.content.decode()
    job = Job.objects.get()
    assert (job.priority, job.state) == (Job.Priority.BATCH, Job.State.PENDING)
    page = browser.get(f"/c/{job.conversation_id}").content.decode()
    assert WAITING in page  # after a reload too
    assert re.search(r'name="batch" id="batch" value="1" checked', page)  # the next prompt keeps the price
    done = batch_finished(job)
    assert done.state == Job.State.SUCCEEDED and not online_calls(quick_batches)
    answer = browser.get(f"/c/turns/{job.id}").content.decode()
    saved = UsageRecord.objects.get(job_id=str(job.pk)).saved
    assert saved > 0 and f"· batch price, ${saved:.4f} saved</p>" in answer and WAITING not in answer
    # Regenerate keeps the price.
    assert browser.post(f"/c/turns/{job.id}/retry", headers=HTMX).status_code == 200
    assert Job.objects.exclude(pk=job.pk).get().priority == Job.Priority.BATCH


def test_a_turn_sent_without_it_runs_at_once_at_the_standard_price(browser: Client, add_key: Any, emu: Any) -> None:
    add_key()
    response = browser.post("/c/send", {"prompt": "a fox in the snow"}, headers=HTMX)
    jobs_settled()  # run on its thread at once
    assert WAITING not in response.content.decode()
    job = Job.objects.get()
    assert (job.priority, job.state) == (Job.Priority.INTERACTIVE, Job.State.SUCCEEDED)
    page = browser.get(f"/c/{job.conversation_id}").content.decode()
    assert 'name="batch" id="batch" value="1" >' in page  # off, as it was
    assert "batch price" not in page


def test_half_price_is_refused_with_why_when_no_key_can_submit_a_batch(browser: Client, add_key: Any) -> None:
    add_key(kind=ApiKey.Kind.VERTEX_EXPRESS)
    response = browser.post("/c/send", {"prompt": "a fox", "batch": "1"}, headers=HTMX)
    assert response.status_code == 422 and "No AI Studio key can submit a batch" in response.content.decode()
    assert not Job.objects.exists()


# --- in a real browser -------------------------------------------------------------------------


@pytest.mark.browser
def test_in_the_browser_a_half_price_turn_waits_for_its_batch_then_shows_its_image(
    tab: Any,  # noqa: F811
    quick_batches: Any,
) -> None:
    tab.locator("#format-chip").click()
    tab.get_by_role("group", name="Price").get_by_role("checkbox", name="Half price, ready within 24 h").check()
    tab.keyboard.press("Escape")
    assert "½ price" in tab.locator("#format-summary").inner_text()
    tab.get_by_label("Prompt").fill("A lighthouse for half the price")
    tab.get_by_label("Prompt").press("Enter")
    label = tab.locator(".pending .pending-label")
    label.get_by_text(WAITING).wait_for()
    tab.wait_for_url(re.compile(r"/c/[0-9a-f-]{36}$"))
    job = Job.objects.get()
    assert (job.priority, job.state) == (Job.Priority.BATCH, Job.State.PENDING)
    tab.reload()
    label.get_by_text(WAITING).wait_for()  # the reloaded page says so too
    batch_finished(job)  # the page's own request for news brings the image
    shown(tab, 1)
    assert "· batch price" in tab.locator(".turn-meta").inner_text()
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED and job.priority == Job.Priority.BATCH
    assert list(UsageRecord.objects.filter(job_id=str(job.pk)).values_list("tier", flat=True)) == ["batch"]
    assert not online_calls(quick_batches)
    assert tab.console_errors == [], tab.console_errors
