"""Per-user daily budgets: the pipeline's submit refuses a user over their limit, and every door
answers that with 429, Retry-After at the next quota day and its own error shape; nothing is
recorded and Gemini is not called."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from conversations import pipeline
from conversations.models import Job
from keys import pool
from keys.models import Budget
from tests.conftest import emulator_requests
from tests.nanoclone.test_mcp import call, failed

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("default_prices")]

GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "a lighthouse"}]}]}
# door: (path, body, a function that finds the error's message in the door's own shape)
DOORS: dict[str, tuple[str, dict[str, Any], Any]] = {
    "api": ("/api/generate", {"prompt": "a lighthouse"}, lambda b: b["error"]["message"]),
    "jobs": ("/api/images/generate", {"prompt": "un phare"}, lambda b: b["detail"]),
    "evolink": (
        "/v1/images/generations",
        {"model": "gemini-2.5-flash-image", "prompt": "a lighthouse"},
        lambda b: b["error"]["message"] if b["error"]["type"] == "rate_limit_error" else None,
    ),
    "runbase": (
        "/api/v1/runs",
        {"model": "google/nano-banana", "input": {"prompt": "a lighthouse"}},
        lambda b: b["error"]["message"] if b["error"]["status"] == 429 else None,
    ),
    "acedata": (
        "/nano-banana/images",
        {"action": "generate", "prompt": "a lighthouse", "model": "nano-banana"},
        lambda b: b["error"]["message"] if b["success"] is False and b["error"]["code"] == "budget_exceeded" else None,
    ),
    "gemini": (
        "/v1beta/models/nano-banana:generateContent",
        GEMINI_BODY,
        lambda b: b["error"]["message"] if b["error"]["status"] == "RESOURCE_EXHAUSTED" else None,
    ),
    "openai": (
        "/openai/v1/images/generations",
        {"prompt": "a lighthouse"},
        lambda b: b["error"]["message"] if b["error"]["code"] == "budget_exceeded" else None,
    ),
}


def spend_one_image(user: Any) -> None:
    job = pipeline.start(pipeline.GenerationRequest(user=user, prompt="the first one"), pipeline.RunMode.INLINE)
    assert job.state == Job.State.SUCCEEDED, job.error


def seconds_to_reset() -> float:
    from django.utils import timezone

    return (pool.next_quota_day_start() - timezone.now()).total_seconds()


@pytest.mark.parametrize("door", sorted(DOORS))
def test_a_user_over_their_image_budget_is_refused_by_every_door(
    door: str, user: Any, api: APIClient, add_key: Any, emu: Any
) -> None:
    add_key()
    Budget.objects.create(user=user, images_per_day=1)
    spend_one_image(user)
    emu.clear()
    jobs_before = Job.objects.count()
    path, body, message_of = DOORS[door]

    response = api.post(path, body, format="json")

    assert response.status_code == 429, response.content
    message = message_of(response.json())
    assert message and "daily budget of 1 images is spent" in message, response.json()
    assert "renews until midnight America/Los_Angeles" in message
    assert abs(int(response["Retry-After"]) - seconds_to_reset()) < 5
    assert Job.objects.count() == jobs_before and emulator_requests(emu) == []


def test_mcp_refuses_a_user_over_their_budget_and_says_when_it_renews(user: Any, add_key: Any, emu: Any) -> None:
    add_key()
    Budget.objects.create(user=user, images_per_day=1)
    spend_one_image(user)
    emu.clear()
    message = failed(call(user, "generate_image", prompt="one more"))
    assert "daily budget of 1 images is spent" in message and "renews until midnight" in message
    assert emulator_requests(emu) == []


def test_a_cost_budget_refuses_once_the_estimated_cost_is_spent(user: Any, api: APIClient, add_key: Any) -> None:
    add_key()
    Budget.objects.create(user=user, cost_per_day=Decimal("0.03"))  # one 1K Nano Banana 2.1 image: $0.0336
    assert api.post("/api/generate", {"prompt": "a lighthouse"}, format="json").status_code == 200
    refused = api.post("/api/generate", {"prompt": "a lighthouse"}, format="json")
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded"
    assert "daily budget of $0.0300 is spent ($0.0336 used)" in refused.json()["error"]["message"]


def test_a_request_for_more_images_than_are_left_is_refused_whole(user: Any, add_key: Any) -> None:
    add_key()
    Budget.objects.create(user=user, images_per_day=3)
    spend_one_image(user)
    with pytest.raises(pipeline.InvalidRequest, match=r"\(2 left, 4 asked\)"):
        pipeline.submit(pipeline.GenerationRequest(user=user, prompt="four more", num_images=4))
    assert pipeline.submit(pipeline.GenerationRequest(user=user, prompt="two more", num_images=2))


def test_other_users_and_users_without_a_budget_are_not_limited(user: Any, other_user: Any, add_key: Any) -> None:
    add_key()
    Budget.objects.create(user=user, images_per_day=1)
    spend_one_image(user)
    spend_one_image(other_user)
    spend_one_image(other_user)
