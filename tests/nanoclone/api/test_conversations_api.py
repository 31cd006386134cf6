"""GET /api/conversations and /api/conversations/<id>, and what a continued conversation sends to Gemini."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from conversations.models import Conversation
from gallery.models import Image
from tests.conftest import b64, emulator_requests, png_bytes

pytestmark = pytest.mark.django_db


def generate(api: Any, prompt: str, **fields: Any) -> dict[str, Any]:
    response = api.post("/api/generate", {"prompt": prompt, **fields}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["data"]


def test_it_carries_the_first_image_and_its_thought_signature_into_the_second_turn(
    api: Any, add_key: Any, emu: Any
) -> None:
    add_key()
    first = generate(api, "a red bicycle")
    generate(api, "now make it blue", conversationId=first["conversationId"])
    sent = emulator_requests(emu)
    assert [(r["turns"], r["inline_images"], r["thought_signatures"]) for r in sent] == [(1, 0, 0), (3, 1, 1)]
    assert sent[1]["prompt"] == "now make it blue"
    # The signature sent back is the one Gemini gave with the first image.
    assert Image.objects.get(pk=first["message"]["images"][0]["id"]).thought_signature


def test_it_lists_conversations_with_message_and_image_counts(api: Any, add_key: Any) -> None:
    add_key()
    first = generate(api, "a red bicycle")
    generate(api, "now make it blue", conversationId=first["conversationId"])
    other = generate(api, "a lighthouse")
    response = api.get("/api/conversations")
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["count"] == 2
    counts = {c["id"]: (c["messageCount"], c["imageCount"]) for c in data["results"]}
    assert counts == {first["conversationId"]: (4, 2), other["conversationId"]: (2, 1)}
    assert data["results"][0]["id"] == other["conversationId"]  # most recently updated first
    assert data["results"][1]["title"] == "a red bicycle"


def test_it_counts_only_generated_images_not_references(api: Any, add_key: Any) -> None:
    add_key()
    generate(api, "edit this", images=[b64(png_bytes((300, 200)))])
    [conversation] = api.get("/api/conversations").json()["data"]["results"]
    assert (conversation["messageCount"], conversation["imageCount"]) == (2, 1)


def test_it_shows_a_conversation_with_its_messages_and_images(api: Any, add_key: Any) -> None:
    add_key()
    first = generate(api, "a red bicycle", images=[b64(png_bytes((300, 200)))])
    second = generate(api, "now make it blue", conversationId=first["conversationId"])
    response = api.get(f"/api/conversations/{first['conversationId']}")
    assert response.status_code == 200
    data = response.json()["data"]
    assert (data["messageCount"], data["imageCount"]) == (4, 2)
    messages = data["messages"]
    assert [(m["role"], m["content"][:14]) for m in messages] == [
        ("user", "a red bicycle"),
        ("assistant", "Here is your i"),
        ("user", "now make it bl"),
        ("assistant", "Here is your i"),
    ]
    assert [i["role"] for i in messages[0]["images"]] == ["input"]
    assert messages[3]["id"] == second["message"]["id"]
    assert messages[3]["images"][0]["id"] == second["message"]["images"][0]["id"]
    assert messages[3]["images"][0]["url"].endswith(".png")
    assert messages[3]["usage"]["totalTokens"] > 0


def test_it_answers_404_for_another_users_conversation(api: Any, other_user: Any) -> None:
    theirs = Conversation.objects.create(user=other_user, title="bob's")
    response = api.get(f"/api/conversations/{theirs.pk}")
    assert response.status_code == 404
    assert response.json() == {
        "success": False,
        "data": None,
        "error": {"code": "not_found", "message": "No Conversation matches the given query."},
    }
    assert api.get("/api/conversations").json()["data"]["count"] == 0


def test_it_answers_404_for_an_unknown_conversation(api: Any) -> None:
    assert api.get(f"/api/conversations/{uuid.uuid4()}").status_code == 404


def test_it_lists_the_models_with_aliases_ratios_and_resolutions(api: Any) -> None:
    response = api.get("/api/models")
    assert response.status_code == 200
    models = {m["id"]: m for m in response.json()["data"]}
    assert set(models) == {
        "gemini-nano-banana-2.1",
        "gemini-3.1-flash-image",
        "gemini-3-pro-image",
        "gemini-3.1-flash-lite-image",
    }
    latest, flash, pro = (
        models["gemini-nano-banana-2.1"],
        models["gemini-3.1-flash-image"],
        models["gemini-3-pro-image"],
    )
    lite = models["gemini-3.1-flash-lite-image"]
    assert latest["default"] is True and flash["default"] is False and pro["default"] is False
    assert {"nano-banana", "gemini-2.5-flash-image"} <= set(latest["aliases"])  # shut-down ids map to 2.1
    assert "nano-banana-2" in flash["aliases"] and flash["deprecated"] is True and latest["deprecated"] is False
    assert "google/nano-banana-pro" in pro["aliases"]
    assert "8:1" in flash["aspectRatios"] and "8:1" not in pro["aspectRatios"]
    assert flash["resolutions"] == ["512", "1K", "2K", "4K"] and pro["resolutions"] == ["1K", "2K", "4K"]
    assert latest["resolutions"] == ["1K", "2K", "4K"] and lite["resolutions"] == ["1K"]
    assert latest["thinkingLevels"] == ["minimal", "medium", "high"] and lite["thinkingLevels"] == []
    assert latest["grounding"] is True and lite["grounding"] is False
    assert "no free tier" in pro["status"]
    assert flash["maxReferenceImages"] == 5
