"""The chat page shows what a user's daily budget has left, and refuses a prompt over it in the composer."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from conversations import pipeline
from conversations.models import Job
from keys.models import Budget

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("default_prices")]


@pytest.fixture
def browser(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


def test_the_chat_page_shows_what_is_left_today(browser: Client, user: Any, add_key: Any) -> None:
    add_key()
    Budget.objects.create(user=user, images_per_day=3, cost_per_day=Decimal("1.00"))
    job = pipeline.start(pipeline.GenerationRequest(user=user, prompt="a kite"), pipeline.RunMode.INLINE)
    assert job.state == Job.State.SUCCEEDED
    html = browser.get("/").content.decode()
    assert "Your daily budget:" in html and "2 of 3 images left" in html and "$0.97 of $1.00 left" in html


def test_without_a_budget_it_says_nothing(browser: Client) -> None:
    assert "Your daily budget" not in browser.get("/").content.decode()


def test_a_prompt_over_the_budget_is_refused_in_the_composer(browser: Client, user: Any, add_key: Any) -> None:
    add_key()
    Budget.objects.create(user=user, images_per_day=0)
    response = browser.post("/c/send", {"prompt": "a kite"}, headers={"HX-Request": "true"})
    assert response["HX-Retarget"] == "#composer-error"
    assert "daily budget of 0 images is spent" in response.content.decode()
    assert not Job.objects.exists()
