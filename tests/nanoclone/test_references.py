"""Every door takes references the same way (conversations.references): a NanoClone /files/ link of
the caller's own image is used without a fetch, a data: URI is decoded, and another user's image is
refused as unknown, with nothing recorded, each in the door's own error shape. MCP's tools take the
same links (tests/nanoclone/test_mcp.py: own file URLs, share URLs, another user's plain URL)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from conversations import pipeline
from conversations.models import Job
from gallery.models import Image
from tests.conftest import b64, emulator_requests, png_bytes

pytestmark = pytest.mark.django_db

HOST = "http://testserver"  # the test client's host: an absolute link to our own files


def generated_image(user: Any) -> Image:
    job = pipeline.start(pipeline.GenerationRequest(user=user, prompt="a teapot"), pipeline.RunMode.INLINE)
    return Image.objects.get(job=job, role=Image.Role.OUTPUT)


def client_for(user: Any) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


def native(user: Any, reference: str) -> Any:
    api = client_for(user)
    return api.post("/api/generate", {"prompt": "the teapot in watercolour", "images": [reference]}, format="json")


def evolink(user: Any, reference: str) -> Any:
    api = client_for(user)
    return api.post("/v1/images/generations", {"prompt": "the teapot", "image_urls": [reference]}, format="json")


def runbase(user: Any, reference: str) -> Any:
    api = client_for(user)
    body = {"model": "nano-banana-2", "input": {"prompt": "the teapot", "image_urls": [reference]}}
    return api.post("/api/v1/runs", body, format="json")


def acedata(user: Any, reference: str) -> Any:
    api = client_for(user)
    body = {"action": "edit", "prompt": "the teapot", "image_urls": [reference]}
    return api.post("/nano-banana/images", body, format="json")


def jobs(user: Any, reference: str) -> Any:
    api = client_for(user)
    return api.post("/api/images/generate", {"prompt": "the teapot", "input_image_url": reference}, format="json")


def chat(user: Any, reference: str) -> Any:
    browser = Client()
    browser.force_login(user)
    return browser.post("/c/send", {"prompt": "the teapot", "reference_image_ids": [reference]}, HTTP_HX_REQUEST="true")


DOORS: dict[str, Callable[[Any, str], Any]] = {
    "native": native,
    "evolink": evolink,
    "runbase": runbase,
    "acedata": acedata,
    "jobs": jobs,
    "chat": chat,
}
SYNCHRONOUS = {"native", "acedata"}
# Where each door says "not found", in its own shape.
NOT_FOUND: dict[str, Callable[[Any], str]] = {
    "native": lambda body: body["error"]["message"],
    "evolink": lambda body: body["error"]["message"],
    "runbase": lambda body: body["error"]["message"],
    "acedata": lambda body: body["error"]["message"],
    "jobs": lambda body: body["detail"],
}


def inputs_of_last_job() -> list[Image]:
    job = Job.objects.order_by("-created_at").first()
    assert job is not None
    return list(Image.objects.filter(message=job.user_message, role=Image.Role.INPUT))


@pytest.mark.parametrize("door", DOORS)
def test_every_door_takes_a_link_to_the_callers_own_image(
    door: str, user: Any, add_key: Any, emu: Any, inline_tasks: None
) -> None:
    add_key()
    own = generated_image(user)
    response = DOORS[door](user, HOST + own.get_absolute_url())
    assert response.status_code < 300, response.content
    [reference] = inputs_of_last_job()
    assert reference.sha256 == own.sha256  # the stored file itself, not a fetch of our own host
    if door in SYNCHRONOUS:  # the others run their job once the request's transaction commits
        assert emulator_requests(emu)[-1]["inline_images"] == 1


@pytest.mark.parametrize("door", DOORS)
def test_every_door_takes_a_data_uri(door: str, user: Any, add_key: Any, inline_tasks: None) -> None:
    add_key()
    response = DOORS[door](user, f"data:image/png;base64,{b64(png_bytes((64, 48)))}")
    assert response.status_code < 300, response.content
    [reference] = inputs_of_last_job()
    assert (reference.width, reference.height) == (64, 48)


@pytest.mark.parametrize("door", DOORS)
def test_every_door_refuses_another_users_image(
    door: str, user: Any, other_user: Any, add_key: Any, inline_tasks: None
) -> None:
    add_key()
    theirs = generated_image(other_user)
    jobs_before = Job.objects.count()
    response = DOORS[door](user, HOST + theirs.get_absolute_url())
    assert response.status_code == 404, response.content
    assert Job.objects.count() == jobs_before  # nothing recorded
    message = NOT_FOUND[door](response.json()) if door in NOT_FOUND else response.content.decode()
    assert "Unknown image id" in message


def test_a_share_link_of_another_users_image_works_for_anyone(user: Any, other_user: Any, add_key: Any) -> None:
    add_key()
    theirs = generated_image(other_user)
    assert native(user, HOST + theirs.signed_url()).status_code == 200
    [reference] = inputs_of_last_job()
    assert reference.sha256 == theirs.sha256
