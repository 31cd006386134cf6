"""Idempotency-Key on every generating POST (and MCP's idempotency_key): a retried request within
NANOCLONE_IDEMPOTENCY_HOURS gets the first request's job or result without a second upstream call;
the same key with another body is a 409 in the door's own shape."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from conversations import pipeline
from conversations.models import Job
from tests.conftest import emulator_requests

pytestmark = pytest.mark.django_db


def client_for(user: Any) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


def native(api: APIClient, prompt: str, key: str) -> Any:
    return api.post("/api/generate", {"prompt": prompt}, format="json", HTTP_IDEMPOTENCY_KEY=key)


def evolink(api: APIClient, prompt: str, key: str) -> Any:
    return api.post("/v1/images/generations", {"prompt": prompt}, format="json", HTTP_IDEMPOTENCY_KEY=key)


def runbase(api: APIClient, prompt: str, key: str) -> Any:
    body = {"model": "nano-banana-2", "input": {"prompt": prompt}}
    return api.post("/api/v1/runs", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def acedata(api: APIClient, prompt: str, key: str) -> Any:
    body = {"action": "generate", "prompt": prompt}
    return api.post("/nano-banana/images", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def jobs(api: APIClient, prompt: str, key: str) -> Any:
    return api.post("/api/images/generate", {"prompt": prompt}, format="json", HTTP_IDEMPOTENCY_KEY=key)


def gemini(api: APIClient, prompt: str, key: str) -> Any:
    body = {"contents": [{"parts": [{"text": prompt}]}]}
    return api.post("/v1beta/models/nano-banana:generateContent", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def openai(api: APIClient, prompt: str, key: str) -> Any:
    return api.post("/openai/v1/images/generations", {"prompt": prompt}, format="json", HTTP_IDEMPOTENCY_KEY=key)


DOORS: dict[str, Callable[[APIClient, str, str], Any]] = {
    "native": native,
    "evolink": evolink,
    "runbase": runbase,
    "acedata": acedata,
    "jobs": jobs,
    "gemini": gemini,
    "openai": openai,
}
# How each door names the job in its answer (OpenAI's in the x-request-id header).
JOB_ID: dict[str, Callable[[Any], str]] = {
    "native": lambda body: body["data"]["jobId"],
    "evolink": lambda body: body["id"],
    "runbase": lambda body: body["id"],
    "acedata": lambda body: body["task_id"],
    "jobs": lambda body: body["job_id"],
    "gemini": lambda body: body["responseId"],
    "openai": lambda response: response["x-request-id"],
}
CONFLICT: dict[str, Callable[[Any], str]] = {
    "native": lambda body: body["error"]["message"],
    "evolink": lambda body: body["error"]["message"],
    "runbase": lambda body: body["error"]["message"],
    "acedata": lambda body: body["error"]["message"],
    "jobs": lambda body: body["detail"],
    "gemini": lambda body: body["error"]["message"],
    "openai": lambda body: body["error"]["message"],
}


@pytest.mark.parametrize("door", DOORS)
def test_a_retried_post_gets_the_first_answer_without_a_second_call(
    door: str, user: Any, add_key: Any, emu: Any, inline_tasks: None
) -> None:
    add_key()
    api = client_for(user)
    first = DOORS[door](api, "a lighthouse", "retry-1")
    again = DOORS[door](api, "a lighthouse", "retry-1")
    assert first.status_code == again.status_code and first.status_code < 300, first.content
    assert job_id(door, again) == job_id(door, first)
    assert Job.objects.count() == 1
    if door in ("native", "acedata", "gemini", "openai"):  # synchronous: the image was made once
        assert len(emulator_requests(emu)) == 1
    other = DOORS[door](api, "a lighthouse", "retry-2")  # another key is another request
    assert job_id(door, other) != job_id(door, first)


def job_id(door: str, response: Any) -> str:
    return JOB_ID[door](response if door == "openai" else response.json())


@pytest.mark.parametrize("door", DOORS)
def test_the_same_key_with_another_body_is_a_conflict(door: str, user: Any, add_key: Any) -> None:
    add_key()
    api = client_for(user)
    assert DOORS[door](api, "a lighthouse", "reused").status_code < 300
    conflict = DOORS[door](api, "a castle", "reused")
    assert conflict.status_code == 409, conflict.content
    assert "Idempotency-Key was used" in CONFLICT[door](conflict.json())
    assert Job.objects.count() == 1


def test_keys_belong_to_their_user_and_expire(user: Any, other_user: Any, add_key: Any, settings: Any) -> None:
    add_key()
    mine = native(client_for(user), "a lighthouse", "shared")
    theirs = native(client_for(other_user), "a lighthouse", "shared")
    assert mine.json()["data"]["jobId"] != theirs.json()["data"]["jobId"]
    Job.objects.filter(user=user).update(created_at=Job.objects.get(user=user).created_at - dt.timedelta(hours=25))
    later = native(client_for(user), "a castle", "shared")  # expired: free for a new request
    assert later.status_code == 200 and later.json()["data"]["jobId"] != mine.json()["data"]["jobId"]


def test_the_pipeline_answers_a_replay_of_a_running_job_once_it_finishes(user: Any, add_key: Any, emu: Any) -> None:
    add_key()
    request = pipeline.GenerationRequest(user=user, prompt="a lighthouse", idempotency_key="k")
    queued = pipeline.start(request, pipeline.RunMode.QUEUE)
    assert pipeline.start(request, pipeline.RunMode.QUEUE).id == queued.id
    pipeline.run(queued.id)
    replay = pipeline.start(request, pipeline.RunMode.INLINE)
    assert (replay.id, replay.state) == (queued.id, Job.State.SUCCEEDED)
    assert len(emulator_requests(emu)) == 1
