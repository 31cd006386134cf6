"""The MCP server through real MCP clients: in-process, over stdio and over streamable HTTP.

- in-process: the SDK's own client against nanoclone.mcp.tools.server (the tools as stdio serves them);
- stdio: `manage.py mcp` as a subprocess on its own data directory, as an agent starts it;
- HTTP: the real ASGI app (nanoclone.asgi, as `serve` runs it) under uvicorn in a thread on a free port.

Tools run on the SDK's worker threads, so these tests use committed data (transactional_db).
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import httpx2
import PIL.Image
import pytest
import requests
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, ImageContent, TextContent
from rest_framework.authtoken.models import Token

from conversations.models import Batch, Conversation, Job
from conversations.pipeline import batches
from gallery import storage
from gallery.models import Image
from keys.models import ApiKey, UsageRecord
from nanoclone.mcp import tools as mcp_server
from tests.conftest import batch_finished, emulator_requests, png_bytes

pytestmark = pytest.mark.django_db(transaction=True)

TOOLS = {
    "generate_image",
    "edit_image",
    "continue_conversation",
    "list_conversations",
    "list_images",
    "get_image",
    "get_job",
    "cancel_job",
    "key_pool_status",
}


# --- helpers -----------------------------------------------------------------------------------


def call(user: Any, tool: str, **arguments: Any) -> CallToolResult:
    """Call one tool through the SDK's in-process client, as `user` (what stdio does)."""

    async def scenario() -> CallToolResult:
        with mcp_server.acting_as(mcp_server.Caller(user)):
            async with Client(mcp_server.server) as client:
                return await client.call_tool(tool, arguments)

    return anyio.run(scenario)


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def picture_of(result: CallToolResult) -> tuple[PIL.Image.Image, bytes, str]:
    """The attached image, decoded: proof the bytes are a real image."""
    images = [block for block in result.content if isinstance(block, ImageContent)]
    assert len(images) == 1, text_of(result)
    data = base64.b64decode(images[0].data)
    picture = PIL.Image.open(io.BytesIO(data))
    picture.load()
    return picture, data, images[0].mime_type


def failed(result: CallToolResult) -> str:
    assert result.is_error, text_of(result)
    return text_of(result)


@pytest.fixture
def staff(user: Any) -> Any:
    return user


@pytest.fixture
def member(other_user: Any) -> Any:
    return other_user


# --- in-process client -----------------------------------------------------------------------


def test_it_lists_every_tool_with_a_description_and_typed_parameters() -> None:
    async def scenario() -> list[Any]:
        async with Client(mcp_server.server) as client:
            return (await client.list_tools()).tools

    tools = {tool.name: tool for tool in anyio.run(scenario)}
    assert set(tools) == TOOLS
    assert all(len(tool.description or "") > 40 for tool in tools.values())
    generate = tools["generate_image"].input_schema
    assert generate["required"] == ["prompt"]
    assert generate["properties"]["full_size"]["type"] == "boolean"
    assert generate["properties"]["reference_images"]["anyOf"][0] == {"items": {"type": "string"}, "type": "array"}
    assert "16:9" in generate["properties"]["aspect_ratio"]["description"]
    assert tools["list_images"].input_schema["properties"]["limit"]["maximum"] == 100
    assert tools["get_image"].annotations.read_only_hint is True
    for name in ("generate_image", "edit_image", "continue_conversation"):
        batch_price = tools[name].input_schema["properties"]["batch_price"]
        assert batch_price["type"] == "boolean" and batch_price["default"] is False
        assert "half price, ready within 24 hours" in batch_price["description"]
    assert tools["get_job"].input_schema["required"] == ["job_id"]
    assert tools["get_job"].annotations.read_only_hint is True
    assert tools["cancel_job"].annotations.destructive_hint is True


def test_it_generates_an_image_into_the_gallery_and_shows_a_preview(staff: Any, add_key: Any) -> None:
    add_key()
    result = call(staff, "generate_image", prompt="a lighthouse at dusk", aspect_ratio="16:9")
    assert not result.is_error, text_of(result)
    info = result.structured_content
    image = Image.objects.get(pk=info["image_id"], user=staff, role=Image.Role.OUTPUT)
    assert (image.width, image.height) == (1376, 768)
    assert str(image.conversation_id) == info["conversation_id"]
    assert image.prompt == "a lighthouse at dusk" and Job.objects.get(images=image).source == "mcp"
    picture, data, mime = picture_of(result)
    assert mime == "image/jpeg" and picture.size == (768, 429)
    assert len(data) <= 1_000_000
    text = text_of(result)
    assert info["image_id"] in text and info["conversation_id"] in text and "1376x768" in text
    assert f"/files/{image.id}.png" in info["url"] and "sig=" in info["share_url"]


def test_it_reports_generation_progress_to_the_agent(staff: Any, add_key: Any) -> None:
    add_key()
    seen: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))

    async def scenario() -> CallToolResult:
        with mcp_server.acting_as(mcp_server.Caller(staff)):
            async with Client(mcp_server.server) as client:
                return await client.call_tool("generate_image", {"prompt": "a kettle"}, progress_callback=on_progress)

    assert not anyio.run(scenario).is_error
    values = [value for value, _ in seen]
    assert len(values) >= 3 and values == sorted(values) and 0 < values[-1] <= 100
    assert any(message and message.startswith("generating") for _, message in seen)


def test_it_attaches_the_original_when_full_size_is_asked_and_fits(staff: Any, add_key: Any) -> None:
    add_key()
    result = call(staff, "generate_image", prompt="a small red kite", full_size=True)
    image = Image.objects.get(pk=result.structured_content["image_id"])
    picture, data, mime = picture_of(result)
    assert mime == "image/png" and picture.size == (1024, 1024)
    assert data == storage.read(image.file)


def test_it_sends_the_largest_downscale_that_fits_the_byte_budget(staff: Any, add_key: Any, settings: Any) -> None:
    add_key()
    settings.MCP_MAX_IMAGE_BYTES = 40_000
    result = call(staff, "generate_image", prompt="a busy market street, lots of detail", full_size=True)
    picture, data, mime = picture_of(result)
    assert mime == "image/jpeg" and len(data) <= 40_000
    assert 256 <= picture.width < 1024
    assert "largest that fits" in text_of(result)


def test_it_edits_a_gallery_image_by_id(staff: Any, add_key: Any, emu: Any) -> None:
    add_key()
    first = call(staff, "generate_image", prompt="a green apple", aspect_ratio="3:2").structured_content
    result = call(staff, "edit_image", image_id=first["image_id"], prompt="make it golden")
    assert not result.is_error, text_of(result)
    edited = Image.objects.get(pk=result.structured_content["image_id"])
    assert (edited.width, edited.height) == (1264, 848)  # an edit keeps the input's aspect ratio
    assert edited.conversation_id != first["conversation_id"]
    assert emulator_requests(emu)[-1]["inline_images"] == 1


def test_it_edits_an_image_sent_as_a_data_uri(staff: Any, add_key: Any, emu: Any) -> None:
    add_key()
    uri = "data:image/png;base64," + base64.b64encode(png_bytes((300, 200))).decode()
    result = call(staff, "edit_image", image=uri, prompt="add a border")
    assert not result.is_error, text_of(result)
    assert Image.objects.filter(user=staff, role=Image.Role.INPUT, width=300).exists()
    assert emulator_requests(emu)[-1]["inline_images"] == 1


def test_it_edits_an_image_fetched_from_a_url(staff: Any, add_key: Any, emu: Any, receiver: Any) -> None:
    add_key()
    url = receiver.serve("/photo.jpg", png_bytes((320, 240), fmt="JPEG"), "image/jpeg")
    result = call(staff, "edit_image", image=url, prompt="make it night")
    assert not result.is_error, text_of(result)
    assert Image.objects.filter(user=staff, role=Image.Role.INPUT, width=320, mime_type="image/jpeg").exists()
    assert emulator_requests(emu)[-1]["inline_images"] == 1


def test_it_takes_our_own_file_urls_as_gallery_references(staff: Any, add_key: Any, emu: Any) -> None:
    add_key()
    first = call(staff, "generate_image", prompt="a teapot").structured_content
    url = "http://127.0.0.1:8000" + first["url"]  # what an agent copies from a result
    result = call(staff, "generate_image", prompt="the teapot, in watercolour", reference_images=[url])
    assert not result.is_error, text_of(result)
    assert emulator_requests(emu)[-1]["inline_images"] == 1


def test_it_takes_a_share_url_of_another_users_image(staff: Any, member: Any, add_key: Any, emu: Any) -> None:
    add_key()
    theirs = call(member, "generate_image", prompt="a shared postcard").structured_content
    result = call(staff, "edit_image", image=theirs["share_url"], prompt="add a stamp")
    assert not result.is_error, text_of(result)
    assert emulator_requests(emu)[-1]["inline_images"] == 1
    plain = call(staff, "edit_image", image=theirs["url"], prompt="add a stamp")
    assert "Unknown image id" in failed(plain)  # without the signature it is the owner's only


def test_it_continues_a_conversation_with_its_history(staff: Any, add_key: Any, emu: Any) -> None:
    add_key()
    first = call(staff, "generate_image", prompt="a red bicycle", model="nano-banana-pro").structured_content
    result = call(staff, "continue_conversation", conversation_id=first["conversation_id"], prompt="now blue")
    assert not result.is_error, text_of(result)
    assert result.structured_content["conversation_id"] == first["conversation_id"]
    assert result.structured_content["model"] == "gemini-3-pro-image"  # the conversation's model
    sent = emulator_requests(emu)
    assert [r["turns"] for r in sent] == [1, 3] and sent[1]["inline_images"] == 1
    assert Image.objects.filter(conversation_id=first["conversation_id"], role=Image.Role.OUTPUT).count() == 2


def make_conversations(user: Any, count: int) -> list[Conversation]:
    return [Conversation.objects.create(user=user, title=f"conversation {n}") for n in range(count)]


def test_it_pages_through_conversations_with_a_cursor(staff: Any, member: Any) -> None:
    made = make_conversations(staff, 5)
    make_conversations(member, 2)
    first = call(staff, "list_conversations", limit=2).structured_content
    second = call(staff, "list_conversations", limit=2, cursor=first["next_cursor"]).structured_content
    third = call(staff, "list_conversations", limit=2, cursor=second["next_cursor"]).structured_content
    seen = [c["conversation_id"] for page in (first, second, third) for c in page["conversations"]]
    assert seen == [str(c.id) for c in reversed(made)]
    assert third["next_cursor"] is None


def test_it_lists_gallery_images_by_conversation_and_prompt(staff: Any, add_key: Any) -> None:
    add_key()
    cat = call(staff, "generate_image", prompt="a sleeping cat").structured_content
    call(staff, "continue_conversation", conversation_id=cat["conversation_id"], prompt="the cat wakes up")
    call(staff, "generate_image", prompt="a dog on a beach")
    everything = call(staff, "list_images").structured_content["images"]
    assert [i["prompt"] for i in everything] == ["a dog on a beach", "the cat wakes up", "a sleeping cat"]
    in_thread = call(staff, "list_images", conversation_id=cat["conversation_id"]).structured_content["images"]
    assert len(in_thread) == 2
    found = call(staff, "list_images", query="DOG").structured_content["images"]
    assert [i["prompt"] for i in found] == ["a dog on a beach"]
    first_page = call(staff, "list_images", limit=2).structured_content
    rest = call(staff, "list_images", limit=2, cursor=first_page["next_cursor"]).structured_content
    assert [i["image_id"] for i in first_page["images"] + rest["images"]] == [i["image_id"] for i in everything]


def test_it_shows_a_gallery_image(staff: Any, add_key: Any) -> None:
    add_key()
    made = call(staff, "generate_image", prompt="a blue vase").structured_content
    result = call(staff, "get_image", image_id=made["image_id"])
    assert not result.is_error, text_of(result)
    assert result.structured_content["image_id"] == made["image_id"]
    picture, _, _ = picture_of(result)
    assert picture.size == (768, 768)


def test_it_reports_the_key_pool_to_staff_with_masked_keys(staff: Any, add_key: Any) -> None:
    add_key("emu-429-0002", label="spent")  # tried first, answers 429 and cools down
    add_key("emu-ok-0001", label="main", daily_limit=10)
    call(staff, "generate_image", prompt="anything")
    status = call(staff, "key_pool_status").structured_content
    assert status["usable_keys"] == 1 and status["total_keys"] == 2
    keys = {key["label"]: key for key in status["keys"]}
    assert keys["main"]["used_today"] == 1 and keys["main"]["daily_limit"] == 10
    assert keys["spent"]["status"] == "active" and keys["spent"]["cooling_down_until"] is None
    [rest] = keys["spent"]["rests"]  # only the model it spent rests
    assert rest["model"] == "gemini-nano-banana-2.1" and rest["on"] == "key"
    assert rest["why"] == "GenerateRequestsPerDayPerProjectPerModel-FreeTier" and rest["until"]
    assert status["usable_keys_by_model"]["gemini-nano-banana-2.1"] == 1
    assert status["usable_keys_by_model"]["gemini-3-pro-image"] == 2
    assert status["projects"] == [{"project": None, "keys": 2, "used_today": 2, "left_today": 508}]
    text = text_of(call(staff, "key_pool_status"))
    assert "emu-ok-0001" not in text and keys["main"]["key"] in text


def test_it_takes_a_thinking_level_and_grounding_and_returns_the_sources(staff: Any, add_key: Any, emu: Any) -> None:
    add_key()
    result = call(staff, "generate_image", prompt="the tallest tower in Paris", thinking_level="medium", grounding=True)
    assert not result.is_error, text_of(result)
    assert list(emulator_requests(emu)[-1]["generation_config"]["thinkingConfig"].values()) == ["MEDIUM"]
    assert "Source: example.org: the tallest tower in Paris <https://example.org/" in text_of(result)
    assert result.structured_content is not None
    assert len(result.structured_content["grounding"]["sources"]) == 2
    refused = call(staff, "generate_image", prompt="a cat", model="nano-banana-2-lite", grounding=True)
    assert "does not offer Google Search grounding" in failed(refused)


def test_a_retried_tool_call_with_an_idempotency_key_makes_one_image(staff: Any, add_key: Any, emu: Any) -> None:
    add_key()
    first = call(staff, "generate_image", prompt="a teapot", idempotency_key="agent-retry-1").structured_content
    again = call(staff, "generate_image", prompt="a teapot", idempotency_key="agent-retry-1").structured_content
    assert first is not None and again is not None and first["image_id"] == again["image_id"]
    assert len(emulator_requests(emu)) == 1
    conflict = call(staff, "generate_image", prompt="a kettle", idempotency_key="agent-retry-1")
    assert "Idempotency-Key was used" in failed(conflict)


# --- the batch price: answered at once, followed with get_job -----------------------------------


# A model with a price in the table, so the ledger shows what the batch price saved.
PRICED = "gemini-3.1-flash-image"


def test_a_batch_priced_generation_answers_at_once_and_get_job_returns_its_image(
    staff: Any, add_key: Any, quick_batches: Any, default_prices: None
) -> None:
    add_key()
    queued = call(
        staff, "generate_image", prompt="a lighthouse at dusk", model=PRICED, aspect_ratio="16:9", batch_price=True
    )
    assert not queued.is_error, text_of(queued)
    info = queued.structured_content
    assert info["state"] == "pending" and info["batch_price"] is True
    assert not [block for block in queued.content if isinstance(block, ImageContent)]
    assert f"get_job(job_id='{info['job_id']}')" in text_of(queued) and "half price" in text_of(queued)
    job = Job.objects.get(pk=info["job_id"], user=staff)
    assert job.priority == Job.Priority.BATCH and job.source == "mcp"
    assert str(job.conversation_id) == info["conversation_id"]
    assert not emulator_requests(quick_batches)  # nothing generated while the call answered

    waiting = call(staff, "get_job", job_id=info["job_id"])
    assert not waiting.is_error and waiting.structured_content["state"] == "pending", text_of(waiting)
    assert "Still waiting" in text_of(waiting)

    assert batch_finished(info["job_id"]).state == Job.State.SUCCEEDED
    done = call(staff, "get_job", job_id=info["job_id"])
    assert not done.is_error, text_of(done)
    image = Image.objects.get(job_id=info["job_id"], role=Image.Role.OUTPUT)
    assert done.structured_content["image_id"] == str(image.id) and done.structured_content["job_id"] == info["job_id"]
    assert (image.width, image.height) == (1376, 768)  # its options went into the batch
    picture, _, mime = picture_of(done)
    assert mime == "image/jpeg" and picture.size == (768, 429)
    assert f"continue_conversation(conversation_id='{info['conversation_id']}'" in text_of(done)
    # Exactly what an online generate_image returns.
    online = call(staff, "generate_image", prompt="a lighthouse at noon", model=PRICED).structured_content
    assert set(done.structured_content) == set(online)
    assert [r.get("api") for r in emulator_requests(quick_batches)] == ["batch", "gemini"]  # one batch, one online call

    (row,) = UsageRecord.objects.filter(job_id=info["job_id"])
    assert row.tier == "batch" and row.cost > 0 and row.saved == row.cost  # half the standard price
    assert UsageRecord.objects.get(job_id=online["job_id"]).tier == "standard"


def test_batch_priced_edits_and_turns_follow_the_same_way(staff: Any, add_key: Any, quick_batches: Any) -> None:
    add_key()
    first = call(staff, "generate_image", prompt="a green apple", aspect_ratio="3:2").structured_content
    edit = call(staff, "edit_image", image_id=first["image_id"], prompt="make it golden", batch_price=True)
    turn = call(
        staff, "continue_conversation", conversation_id=first["conversation_id"], prompt="two apples", batch_price=True
    )
    jobs = [edit.structured_content["job_id"], turn.structured_content["job_id"]]
    assert [Job.objects.get(pk=job).priority for job in jobs] == [Job.Priority.BATCH, Job.Priority.BATCH]
    assert [batch_finished(job).state for job in jobs] == [Job.State.SUCCEEDED, Job.State.SUCCEEDED]
    edited, continued = (call(staff, "get_job", job_id=job).structured_content for job in jobs)
    assert str(Image.objects.get(pk=edited["image_id"]).edited_from_id) == first["image_id"]
    assert (edited["width"], edited["height"]) == (1264, 848)  # an edit keeps the input's aspect ratio
    assert continued["conversation_id"] == first["conversation_id"]
    assert set(UsageRecord.objects.filter(job_id__in=jobs).values_list("tier", flat=True)) == {"batch"}


def test_cancel_job_takes_a_batch_priced_job_out_of_its_batch(staff: Any, add_key: Any, quick_batches: Any) -> None:
    add_key()
    quick_batches.batch_seconds = 30
    job_id = call(staff, "generate_image", prompt="a kite", batch_price=True).structured_content["job_id"]
    batches.tick()  # packed and sent to Gemini
    assert Batch.objects.get().state == Batch.State.SUBMITTED
    assert Job.objects.get(pk=job_id).phase == Job.Phase.BATCHED
    assert call(staff, "get_job", job_id=job_id).structured_content["phase"] == "batched"
    cancelled = call(staff, "cancel_job", job_id=job_id)
    assert not cancelled.is_error, text_of(cancelled)
    assert cancelled.structured_content["state"] == "cancelled" and f"Cancelled job {job_id}" in text_of(cancelled)
    assert Job.objects.get(pk=job_id).state == Job.State.CANCELLED
    assert Batch.objects.get().state == Batch.State.ENDED  # its only job gone: the Gemini batch is cancelled
    assert "Cancelled" in failed(call(staff, "get_job", job_id=job_id))
    assert "already finished (cancelled)" in failed(call(staff, "cancel_job", job_id=job_id))
    batches.tick()
    assert not Image.objects.filter(job_id=job_id).exists()
    assert not UsageRecord.objects.filter(job_id=job_id).exists()


def test_get_job_and_cancel_job_know_only_the_callers_jobs(
    staff: Any, member: Any, add_key: Any, quick_batches: Any
) -> None:
    add_key()
    theirs = call(member, "generate_image", prompt="a private sketch", batch_price=True).structured_content["job_id"]
    for tool in ("get_job", "cancel_job"):
        assert f"No job '{theirs}' of yours" in failed(call(staff, tool, job_id=theirs))
        unknown = "00000000-0000-4000-8000-000000000000"
        assert f"No job '{unknown}' of yours" in failed(call(staff, tool, job_id=unknown))
        assert "not a valid job id" in failed(call(staff, tool, job_id="42"))
    assert Job.objects.get(pk=theirs).state == Job.State.PENDING  # still theirs, still waiting
    assert call(member, "get_job", job_id=theirs).structured_content["state"] == "pending"


def test_a_batch_price_without_an_ai_studio_key_is_refused_at_once(
    staff: Any, add_key: Any, quick_batches: Any
) -> None:
    add_key("emu-ok-0001", kind=ApiKey.Kind.VERTEX_EXPRESS)
    message = failed(call(staff, "generate_image", prompt="a field", batch_price=True))
    assert "AI Studio" in message and "no_usable_key" in message
    assert not Job.objects.exists()


def test_a_failed_batch_job_is_get_jobs_tool_error(staff: Any, add_key: Any, quick_batches: Any) -> None:
    add_key()
    job_id = call(staff, "generate_image", prompt="something [block]", batch_price=True).structured_content["job_id"]
    assert batch_finished(job_id).state == Job.State.FAILED
    message = failed(call(staff, "get_job", job_id=job_id))
    assert "blocked" in message and "Rephrase" in message


# --- errors come back as tool errors the agent can act on ---------------------------------------


def test_it_says_when_no_key_is_usable(staff: Any) -> None:
    message = failed(call(staff, "generate_image", prompt="a castle"))
    assert "No Gemini API key is configured" in message and "no_usable_key" in message


def test_it_says_when_gemini_blocks_the_prompt(staff: Any, add_key: Any) -> None:
    add_key()
    message = failed(call(staff, "generate_image", prompt="something [block]"))
    assert "blocked" in message and "Rephrase" in message


def test_it_refuses_an_unsupported_aspect_ratio(staff: Any, add_key: Any) -> None:
    add_key()
    message = failed(call(staff, "generate_image", prompt="a castle", aspect_ratio="7:3"))
    assert "7:3" in message and "16:9" in message
    assert not Conversation.objects.exists()


def test_it_refuses_an_edit_without_exactly_one_image(staff: Any) -> None:
    assert "exactly one" in failed(call(staff, "edit_image", prompt="brighter"))


def test_it_refuses_a_reference_url_on_our_own_network(staff: Any, add_key: Any) -> None:
    add_key()
    message = failed(call(staff, "edit_image", image="http://10.0.0.7/cat.png", prompt="brighter"))
    assert "private address" in message


def test_it_refuses_to_continue_someone_elses_conversation(staff: Any, member: Any, add_key: Any) -> None:
    add_key()
    theirs = make_conversations(member, 1)[0]
    message = failed(call(staff, "continue_conversation", conversation_id=str(theirs.id), prompt="hi"))
    assert "was not found" in message


def test_it_refuses_a_cursor_it_did_not_make(staff: Any) -> None:
    assert "Invalid cursor" in failed(call(staff, "list_conversations", cursor="not-a-cursor"))


def test_it_refuses_a_malformed_conversation_filter(staff: Any) -> None:
    assert "not a valid conversation id" in failed(call(staff, "list_images", conversation_id="42"))


def test_it_does_not_show_another_users_image(staff: Any, member: Any, add_key: Any) -> None:
    add_key()
    theirs = call(member, "generate_image", prompt="private sketch").structured_content
    assert "No image" in failed(call(staff, "get_image", image_id=theirs["image_id"]))


def test_it_keeps_the_key_pool_from_non_staff_users(member: Any) -> None:
    assert "staff" in failed(call(member, "key_pool_status"))


def test_it_refuses_tools_without_a_user() -> None:
    async def scenario() -> CallToolResult:
        async with Client(mcp_server.server) as client:
            return await client.call_tool("list_images", {})

    assert "Not authenticated" in failed(anyio.run(scenario))


# --- streamable HTTP against the running ASGI app ----------------------------------------------


def token_for(user: Any) -> str:
    return Token.objects.create(user=user).key


def over_http(url: str, token: str, calls: list[tuple[str, dict[str, Any]]]) -> tuple[set[str], list[CallToolResult]]:
    """List the tools and make `calls` through the SDK's streamable HTTP client, with the token header."""

    async def scenario() -> tuple[set[str], list[CallToolResult]]:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client,
        ):
            names = {tool.name for tool in (await client.list_tools()).tools}
            return names, [await client.call_tool(name, arguments) for name, arguments in calls]

    return anyio.run(scenario)


def test_it_generates_over_http_into_the_same_gallery(live_app: str, staff: Any, add_key: Any) -> None:
    add_key()
    token = token_for(staff)
    names, (made, listed) = over_http(
        live_app, token, [("generate_image", {"prompt": "a paper boat"}), ("list_images", {})]
    )
    assert names == TOOLS
    assert not made.is_error, text_of(made)
    picture, _, _ = picture_of(made)
    assert picture.size == (768, 768)
    image_id = made.structured_content["image_id"]
    assert Image.objects.filter(pk=image_id, user=staff, job__source="mcp").exists()
    assert [i["image_id"] for i in listed.structured_content["images"]] == [image_id]
    # The URL in the result is this server's, and the gallery API sees the image too.
    assert made.structured_content["url"].startswith(live_app)
    file = requests.get(made.structured_content["url"], headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert file.status_code == 200 and file.content == storage.read(Image.objects.get(pk=image_id).file)
    gallery = requests.get(f"{live_app}/api/images", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert [i["id"] for i in gallery.json()["data"]["results"]] == [image_id]


def test_it_returns_tool_errors_over_http(live_app: str, member: Any) -> None:
    _, (status,) = over_http(live_app, token_for(member), [("key_pool_status", {})])
    assert "staff" in failed(status)


def test_it_refuses_a_request_without_a_token(live_app: str) -> None:
    response = requests.post(f"{live_app}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, timeout=10)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "not_authenticated"


def test_it_refuses_a_wrong_token(live_app: str) -> None:
    response = requests.post(
        f"{live_app}/mcp", json={}, headers={"Authorization": "Bearer not-a-real-token"}, timeout=10
    )
    assert response.status_code == 401 and response.json()["error"]["message"] == "Invalid API token."


def test_it_refuses_a_token_of_a_deactivated_user(live_app: str, member: Any) -> None:
    token = token_for(member)
    get_user_model().objects.filter(pk=member.pk).update(is_active=False)
    response = requests.post(f"{live_app}/mcp", json={}, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 401


INITIALIZE: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("header", "value", "status"),
    [("Host", "evil.example:8000", 421), ("Origin", "http://evil.example", 403)],
)
def test_it_refuses_dns_rebinding_from_a_foreign_host_or_origin(
    live_app: str, member: Any, header: str, value: str, status: int
) -> None:
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {token_for(member)}", header: value}
    response = requests.post(f"{live_app}/mcp", json=INITIALIZE, headers=headers, timeout=10)
    assert response.status_code == status


def test_it_keeps_another_users_token_out_of_a_session(live_app: str, staff: Any, member: Any) -> None:
    opened = requests.post(
        f"{live_app}/mcp",
        json=INITIALIZE,
        headers={**MCP_HEADERS, "Authorization": f"Bearer {token_for(staff)}"},
        timeout=10,
    )
    session = opened.headers["mcp-session-id"]
    hijack = requests.post(
        f"{live_app}/mcp",
        json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        headers={**MCP_HEADERS, "Authorization": f"Bearer {token_for(member)}", "mcp-session-id": session},
        timeout=10,
    )
    assert hijack.status_code == 404


def test_it_still_serves_django_next_to_mcp(live_app: str) -> None:
    assert requests.get(f"{live_app}/health", timeout=10).status_code == 200


# --- stdio: `manage.py mcp` as an agent starts it ----------------------------------------------


@pytest.fixture(scope="module")
def stdio_env(tmp_path_factory: Any, emulator: Any) -> dict[str, str]:
    """A fresh data directory (SQLite file) with a superuser, a member and an emulator key."""
    # Nothing of this environment's database or settings: the subprocess gets its own data dir.
    env = {k: v for k, v in os.environ.items() if not k.startswith("NANOCLONE_") and k != "DATABASE_URL"}
    env["NANOCLONE_DATA_DIR"] = str(tmp_path_factory.mktemp("stdio") / "data")
    setup = (
        "from django.core.management import call_command; call_command('migrate', verbosity=0)\n"
        "from django.contrib.auth import get_user_model\n"
        "from keys.models import ApiKey\n"
        "get_user_model().objects.create_superuser('admin', password='pw-admin-123')\n"
        "get_user_model().objects.create_user('carol', password='pw-carol-123')\n"
        f"ApiKey.create('emu-ok-0001', base_url='{emulator.url}')\n"
    )
    manage = [sys.executable, "manage.py", "shell", "-c", setup]
    subprocess.run(manage, cwd=django_settings.BASE_DIR, env=env, check=True, capture_output=True, timeout=120)
    return env


def test_it_serves_the_tools_on_stdio_as_the_configured_user(stdio_env: dict[str, str], tmp_path: Path) -> None:
    env = {**stdio_env, "NANOCLONE_MCP_USER": "carol"}
    params = StdioServerParameters(
        command=sys.executable, args=["manage.py", "mcp"], cwd=django_settings.BASE_DIR, env=env
    )
    errlog = tmp_path / "stderr.txt"

    async def scenario() -> tuple[set[str], CallToolResult, CallToolResult]:
        with errlog.open("w") as stderr:
            async with Client(stdio_client(params, errlog=stderr)) as client:
                names = {tool.name for tool in (await client.list_tools()).tools}
                made = await client.call_tool("generate_image", {"prompt": "a sunrise over stdio"})
                return names, made, await client.call_tool("key_pool_status", {})

    names, made, status = anyio.run(scenario)
    assert names == TOOLS
    assert not made.is_error, text_of(made)
    # A local agent gets the file itself, in the data directory's gallery.
    path = Path(made.structured_content["path"])
    assert path.is_relative_to(env["NANOCLONE_DATA_DIR"]) and str(path) in text_of(made)
    assert PIL.Image.open(path).size == (1024, 1024)
    picture, _, _ = picture_of(made)
    assert picture.size == (768, 768)
    assert "staff" in failed(status)  # carol, not the superuser
    assert "acting as carol" in errlog.read_text()


def test_it_writes_nothing_but_protocol_on_stdout(stdio_env: dict[str, str]) -> None:
    manage = subprocess.Popen(
        [sys.executable, "manage.py", "mcp"],
        cwd=django_settings.BASE_DIR,
        env=stdio_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert manage.stdin and manage.stdout
    watchdog = threading.Timer(60, manage.kill)  # a hung server fails the test instead of blocking readline()
    watchdog.start()
    requests_sent = [
        INITIALIZE,
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_images", "arguments": {}}},
    ]
    manage.stdin.write("".join(json.dumps(message) + "\n" for message in requests_sent))
    manage.stdin.flush()
    lines = [manage.stdout.readline(), manage.stdout.readline()]
    rest, stderr = manage.communicate(timeout=30)  # closes stdin: EOF ends the server
    watchdog.cancel()
    answers = [json.loads(line) for line in lines]
    assert [answer["id"] for answer in answers] == [1, 2]
    assert answers[1]["result"]["structuredContent"] == {"images": [], "next_cursor": None}
    assert rest == "" and manage.returncode == 0
    assert "acting as admin" in stderr


def test_the_key_pool_shows_each_credentials_kind_location_and_proxy(staff: Any, add_key: Any, emu: Any) -> None:
    add_key("emu-ok-0003", label="studio")
    add_key("emu-ok-0004", label="express", kind=ApiKey.Kind.VERTEX_EXPRESS, proxy="socks5://u:pw-mcp@10.0.0.3:1080")
    account = emu.vertex.service_account("proj-mcp")
    add_key(json.dumps(account), label="account", kind=ApiKey.Kind.VERTEX_SERVICE_ACCOUNT, location="europe-west4")
    result = call(staff, "key_pool_status")
    keys = {key["label"]: key for key in result.structured_content["keys"]}
    assert (keys["studio"]["kind"], keys["studio"]["location"], keys["studio"]["proxy"]) == ("ai_studio", None, None)
    assert keys["express"]["kind"] == "vertex_express" and keys["express"]["proxy"] == "socks5://u@10.0.0.3:1080"
    assert keys["account"]["key"] == account["client_email"] and keys["account"]["project"] == "proj-mcp"
    assert keys["account"]["location"] == "europe-west4"
    assert "pw-mcp" not in text_of(result) and account["private_key"].splitlines()[1] not in text_of(result)
