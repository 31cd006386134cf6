"""Each generated image carries its estimated cost: in the images API and in the gallery's lightbox."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from keys.models import UsageRecord

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("default_prices")]


def test_the_images_api_and_the_lightbox_show_the_estimated_cost(
    api: APIClient, client: Client, user: Any, add_key: Any
) -> None:
    add_key()
    generated = api.post("/api/generate", {"prompt": "a lighthouse", "resolution": "4K"}, format="json").json()
    image_id = generated["data"]["message"]["images"][0]["id"]
    cost = UsageRecord.objects.get().cost
    assert float(cost) > 0.0756  # the 4K image, plus its prompt tokens
    detail = api.get(f"/api/images/{image_id}").json()["data"]
    assert detail["estimatedCost"] == float(cost)
    client.force_login(user)
    fragment = client.get(f"/gallery/{image_id}", headers={"HX-Request": "true"}).content.decode()
    assert "Estimated cost" in fragment and f"${cost:.4f}" in fragment


def test_a_key_added_as_free_tier_makes_images_that_cost_nothing(api: APIClient, emu: Any) -> None:
    added = api.post("/api/keys", {"key": "emu-ok-free", "baseUrl": emu.url, "freeTier": True}, format="json")
    assert added.status_code == 201 and added.json()["data"]["freeTier"] is True
    generated = api.post("/api/generate", {"prompt": "a lighthouse"}, format="json").json()
    assert generated["data"]["message"]["images"][0]["estimatedCost"] == 0
    assert api.get("/api/keys").json()["data"][0]["freeTier"] is True
