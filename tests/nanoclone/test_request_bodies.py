"""What every door does with a request body: JSON read whole (also when sent chunked), refused
with 413 over NANOCLONE_MAX_REQUEST_BYTES and 415 when it is not JSON, each in the door's own shape.

Chunked bodies only exist on a real connection, so those tests talk to nanoclone.asgi served by
uvicorn (as `serve` runs it) over a loopback socket.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from conversations.models import Job

PROMPT = "a lighthouse in a storm"


def native(body: dict[str, Any], status: int) -> str:
    assert body["success"] is False and body["data"] is None
    return str(body["error"]["code"])


def evolink(body: dict[str, Any], status: int) -> str:
    assert body["error"]["code"] == status and body["error"]["type"].endswith("_error")
    return str(body["error"]["message"])


def runbase(body: dict[str, Any], status: int) -> str:
    assert body["error"]["status"] == status
    return str(body["error"]["code"])


def acedata(body: dict[str, Any], status: int) -> str:
    assert body["success"] is False and body["trace_id"]
    return str(body["error"]["code"])


def jobs(body: dict[str, Any], status: int) -> str:
    assert set(body) == {"detail", "message"} and body["detail"] == body["message"]
    return str(body["message"])


@dataclass
class Door:
    path: str
    body: dict[str, Any]
    created: int  # the status of a successful creation
    shape: Callable[[dict[str, Any], int], str]  # asserts the door's error shape; returns its code or message


DOORS = {
    "native": Door("/api/generate", {"prompt": PROMPT}, 200, native),
    "evolink": Door("/v1/images/generations", {"prompt": PROMPT}, 200, evolink),
    "runbase": Door("/api/v1/runs", {"model": "google/nano-banana-pro", "input": {"prompt": PROMPT}}, 201, runbase),
    "acedata": Door("/nano-banana/images", {"action": "generate", "prompt": PROMPT}, 200, acedata),
    "jobs": Door("/api/images/generate", {"prompt": PROMPT}, 202, jobs),
}
# What each door's error says for a body over the cap and for a body that is not JSON.
TOO_LARGE = {"native": "too_large", "runbase": "too_large", "acedata": "too_large", "jobs": "trop volumineux"}
NOT_JSON = {"native": "unsupported_media_type", "runbase": "unsupported_media_type"}
NOT_JSON |= {"acedata": "unsupported_media_type", "jobs": "non supporté"}


def padded(door: Door, size: int) -> bytes:
    return json.dumps({**door.body, "padding": "x" * size}).encode()


@pytest.mark.parametrize("name", DOORS)
def test_every_door_answers_413_in_its_own_shape_over_the_cap(api: APIClient, settings: Any, name: str) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    door = DOORS[name]
    response = api.post(door.path, padded(door, 2000), content_type="application/json")
    assert response.status_code == 413, response.content
    said = door.shape(response.json(), 413)
    assert TOO_LARGE.get(name, "too large") in said
    assert not Job.objects.exists()


@pytest.mark.parametrize("name", DOORS)
@pytest.mark.parametrize("form", ["multipart", "urlencoded"])
def test_every_door_answers_415_in_its_own_shape_for_a_form_body(api: APIClient, name: str, form: str) -> None:
    door = DOORS[name]
    if form == "multipart":
        response = api.post(door.path, {"prompt": PROMPT, "action": "generate"}, format="multipart")
    else:
        response = api.post(door.path, f"prompt={PROMPT}", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415, response.content
    assert NOT_JSON.get(name, "Unsupported media type") in door.shape(response.json(), 415)
    assert not Job.objects.exists()


def test_the_jobs_schema_advertises_the_json_body_it_accepts(db: Any) -> None:
    schema = Client().get("/api/schema?format=json").json()
    assert list(schema["paths"]["/api/images/generate"]["post"]["requestBody"]["content"]) == ["application/json"]


# --- over a real socket ---------------------------------------------------------------------------


@pytest.fixture
def server(live_app: str, user: Any, add_key: Any) -> Iterator[tuple[str, int, str]]:
    add_key()
    host, port = live_app.removeprefix("http://").split(":")
    yield host, int(port), Token.objects.create(user=user).key


def send_chunked(server: tuple[str, int, str], path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """POST `body` in 1000-byte chunks, with Transfer-Encoding: chunked and no Content-Length."""
    host, port, token = server
    connection = http.client.HTTPConnection(host, port, timeout=60)
    try:
        chunks = (body[start : start + 1000] for start in range(0, len(body), 1000))
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        connection.request("POST", path, body=chunks, headers=headers, encode_chunked=True)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.mark.parametrize("name", DOORS)
def test_every_door_reads_a_chunked_body(server: tuple[str, int, str], name: str) -> None:
    door = DOORS[name]
    status, body = send_chunked(server, door.path, padded(door, 5000))
    assert status == door.created, body
    assert PROMPT in Job.objects.get().prompt  # read, not "prompt: This field is required"


@pytest.mark.parametrize("name", DOORS)
def test_every_door_answers_413_for_a_chunked_body_over_the_cap(
    server: tuple[str, int, str], settings: Any, name: str
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 3000
    door = DOORS[name]
    status, body = send_chunked(server, door.path, padded(door, 20_000))
    assert status == 413, body
    assert TOO_LARGE.get(name, "too large") in door.shape(body, 413)
    assert not Job.objects.exists()
