"""The Gemini door's Batch API end to end: the real google-genai SDK's client.batches pointed at a live
NanoClone, inline requests run as jobs at the Batch API's price (pipeline.batches, against the emulator)."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import PIL.Image
import pytest
from google import genai
from google.genai import errors, types
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from conversations.models import Job
from conversations.pipeline import batches
from gallery.models import Image
from keys.models import UsageRecord
from nanoclone.models import GeminiBatch

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "gemini-3.1-flash-image"
DONE = (types.JobState.JOB_STATE_SUCCEEDED, types.JobState.JOB_STATE_CANCELLED, types.JobState.JOB_STATE_FAILED)


@pytest.fixture
def client_for(live_server: Any) -> Callable[[Any], genai.Client]:
    def make(user: Any) -> genai.Client:
        # Connection: close, as in test_gemini: no kept-alive live_server thread outlives the test.
        options = types.HttpOptions(base_url=live_server.url, headers={"Connection": "close"})
        return genai.Client(api_key=str(Token.objects.get_or_create(user=user)[0].key), http_options=options)

    return make


def inline(prompt: str, metadata: dict[str, str], **image: Any) -> types.InlinedRequest:
    config = types.GenerateContentConfig(
        response_modalities=["TEXT", "IMAGE"], image_config=types.ImageConfig(**image) if image else None
    )
    return types.InlinedRequest(contents=prompt, config=config, metadata=metadata)


def finished(client: genai.Client, name: str, within: float = 20) -> types.BatchJob:
    """Poll the batch as a google-genai user does, playing the cluster's batch thread between polls."""
    deadline = time.monotonic() + within
    while True:
        job = client.batches.get(name=name)
        if job.state in DONE:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} still {job.state}")
        batches.tick()
        time.sleep(0.1)


def picture(response: types.GenerateContentResponse | None) -> PIL.Image.Image:
    assert response is not None
    [part] = [part for part in response.parts or [] if part.inline_data]
    assert part.inline_data is not None and part.inline_data.data
    return PIL.Image.open(io.BytesIO(part.inline_data.data))


def test_a_batch_of_inline_requests_comes_back_in_order_at_the_batch_price(
    client_for: Callable[[Any], genai.Client], quick_batches: Any, add_key: Any, user: Any
) -> None:
    add_key()
    client = client_for(user)
    created = client.batches.create(
        model=MODEL,
        src=[inline("a red fox", {"key": "fox"}, aspect_ratio="16:9"), inline("a blue whale", {"key": "whale"})],
        config=types.CreateBatchJobConfig(display_name="animals"),
    )
    assert created.name and created.name.startswith("batches/")
    assert (created.state, created.display_name, created.model) == (
        types.JobState.JOB_STATE_PENDING,
        "animals",
        f"models/{MODEL}",
    )
    assert created.dest is None  # nothing to read before it is done
    jobs = Job.objects.order_by("created_at")
    assert [(job.priority, job.source, job.state) for job in jobs] == [(Job.Priority.BATCH, "gemini", "pending")] * 2
    done = finished(client, created.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED and done.end_time is not None
    assert done.dest is not None and done.dest.inlined_responses
    fox, whale = done.dest.inlined_responses
    assert (fox.metadata, whale.metadata, fox.error, whale.error) == ({"key": "fox"}, {"key": "whale"}, None, None)
    assert picture(fox.response).width > picture(fox.response).height  # its own imageConfig went with it
    assert picture(whale.response).size == (1024, 1024)
    assert fox.response is not None and "red fox" in (fox.response.text or "")
    assert fox.response.response_id == jobs[0].id.hex  # the same answer generateContent gives for the job
    # Recorded like every generation: gallery images, ledger rows at the batch tier, no online call.
    assert Image.objects.filter(job__in=jobs, role=Image.Role.OUTPUT).count() == 2
    rows = UsageRecord.objects.filter(job_id__in=[str(job.pk) for job in jobs])
    assert rows.count() == 2 and set(rows.values_list("tier", flat=True)) == {"batch"}


def test_a_blocked_item_answers_as_generate_content_does_and_the_others_succeed(
    client_for: Callable[[Any], genai.Client], quick_batches: Any, add_key: Any, user: Any
) -> None:
    add_key()
    client = client_for(user)
    src: list[types.InlinedRequestDict] = [  # dicts, as docs/api/gemini.md writes them
        {"contents": "a castle", "metadata": {"n": "1"}},
        {"contents": "forbidden [block]", "config": {"image_config": {"aspect_ratio": "16:9"}}, "metadata": {"n": "2"}},
    ]
    created = client.batches.create(model=MODEL, src=src)
    assert created.name
    done = finished(client, created.name)
    assert done.state == "JOB_STATE_SUCCEEDED" and done.dest and done.dest.inlined_responses
    castle, blocked = done.dest.inlined_responses
    assert picture(castle.response) and blocked.metadata == {"n": "2"}
    # A refused prompt is generateContent's 200 with promptFeedback, as Gemini's batch answers it too.
    assert blocked.response is not None and blocked.response.prompt_feedback is not None
    assert blocked.response.prompt_feedback.block_reason == types.BlockedReason.PROHIBITED_CONTENT
    assert not blocked.response.parts


def test_an_item_that_failed_carries_its_own_error(
    client_for: Callable[[Any], genai.Client], quick_batches: Any, add_key: Any, user: Any
) -> None:
    add_key()
    client = client_for(user)
    created = client.batches.create(model=MODEL, src=[inline("a kite", {"n": "1"}), inline("a boat", {"n": "2"})])
    assert created.name
    second = Job.objects.order_by("created_at").last()
    assert second is not None
    second.state, second.error_code, second.error = Job.State.FAILED, Job.ErrorCode.UPSTREAM_ERROR, "Gemini failed."
    second.save()
    done = finished(client, created.name)
    assert done.dest and done.dest.inlined_responses
    kite, boat = done.dest.inlined_responses
    assert kite.response and kite.error is None
    assert boat.response is None and boat.metadata == {"n": "2"}
    assert boat.error is not None and (boat.error.code, boat.error.message) == (503, "Gemini failed.")


def test_list_shows_the_callers_own_batches_newest_first(
    client_for: Callable[[Any], genai.Client], quick_batches: Any, add_key: Any, user: Any, other_user: Any
) -> None:
    add_key()
    client = client_for(user)
    first = client.batches.create(model=MODEL, src=[inline("one", {})])
    second = client.batches.create(model=MODEL, src=[inline("two", {})])
    other = client_for(other_user)  # held: a collected Client closes its connections
    theirs = other.batches.create(model=MODEL, src=[inline("three", {})])
    pager = client.batches.list(config=types.ListBatchJobsConfig(page_size=1))
    assert [job.name for job in pager.page] == [second.name]  # a page of one
    assert [job.name for job in pager] == [second.name, first.name]  # every page
    assert all(job.state == types.JobState.JOB_STATE_PENDING for job in client.batches.list())
    assert theirs.name not in [job.name for job in client.batches.list()]


def test_cancelling_a_pending_batch_cancels_its_jobs(
    client_for: Callable[[Any], genai.Client], quick_batches: Any, add_key: Any, user: Any
) -> None:
    add_key()
    client = client_for(user)
    created = client.batches.create(model=MODEL, src=[inline("a tower", {}), inline("a bridge", {})])
    assert created.name and created.state == types.JobState.JOB_STATE_PENDING
    client.batches.cancel(name=created.name)
    cancelled = client.batches.get(name=created.name)
    assert cancelled.state == types.JobState.JOB_STATE_CANCELLED
    assert set(Job.objects.values_list("state", flat=True)) == {Job.State.CANCELLED}
    assert cancelled.dest and [r.error.code for r in cancelled.dest.inlined_responses or [] if r.error] == [499, 499]
    batches.tick()
    assert not UsageRecord.objects.exists()  # nothing was sent


def test_cancelling_a_batch_at_google_cancels_the_gemini_batch(
    client_for: Callable[[Any], genai.Client], quick_batches: Any, add_key: Any, user: Any
) -> None:
    add_key()
    quick_batches.batch_seconds = 30
    client = client_for(user)
    created = client.batches.create(model=MODEL, src=[inline("a windmill", {})])
    assert created.name
    batches.tick()  # packed and sent: the job waits in a Gemini batch
    assert client.batches.get(name=created.name).state == types.JobState.JOB_STATE_RUNNING
    client.batches.cancel(name=created.name)
    assert client.batches.get(name=created.name).state == types.JobState.JOB_STATE_CANCELLED
    job = Job.objects.get()
    assert job.state == Job.State.CANCELLED and job.batch is not None and job.batch.state == "ended"


def test_a_file_based_batch_is_refused_with_400(
    client_for: Callable[[Any], genai.Client], add_key: Any, user: Any
) -> None:
    add_key()
    client = client_for(user)
    with pytest.raises(errors.ClientError) as refused:
        client.batches.create(model=MODEL, src="files/my-requests")
    assert refused.value.code == 400 and refused.value.status == "INVALID_ARGUMENT"
    assert "inline requests only" in (refused.value.message or "")
    assert not GeminiBatch.objects.exists() and not Job.objects.exists()


def test_a_bad_item_is_400_naming_it_and_records_nothing(
    client_for: Callable[[Any], genai.Client], quick_batches: Any, add_key: Any, user: Any
) -> None:
    add_key()
    client = client_for(user)
    with pytest.raises(errors.ClientError) as refused:
        client.batches.create(model=MODEL, src=[inline("fine", {}), inline("a square", {}, aspect_ratio="7:3")])
    assert refused.value.code == 400 and "requests[1]" in (refused.value.message or "")
    assert not GeminiBatch.objects.exists() and not Job.objects.exists()


def test_an_unknown_another_users_or_deleted_batch_is_404(
    client_for: Callable[[Any], genai.Client], quick_batches: Any, add_key: Any, user: Any, other_user: Any
) -> None:
    add_key()
    client = client_for(user)
    with pytest.raises(errors.ClientError) as unknown:
        client.batches.get(name="batches/nosuchbatch")
    assert unknown.value.code == 404 and unknown.value.status == "NOT_FOUND"
    other = client_for(other_user)
    theirs = other.batches.create(model=MODEL, src=[inline("a lamp", {})])
    assert theirs.name
    for call in (client.batches.get, client.batches.cancel, client.batches.delete):
        with pytest.raises(errors.ClientError) as hidden:
            call(name=theirs.name)
        assert hidden.value.code == 404
    mine = client.batches.create(model=MODEL, src=[inline("a chair", {})])
    assert mine.name
    client.batches.delete(name=mine.name)
    with pytest.raises(errors.ClientError) as deleted:
        client.batches.get(name=mine.name)
    assert deleted.value.code == 404
    assert Job.objects.filter(user=user).count() == 1  # its request goes on: delete is not cancel


def test_a_bad_token_is_401(client_for: Callable[[Any], genai.Client], live_server: Any) -> None:
    options = types.HttpOptions(base_url=live_server.url, headers={"Connection": "close"})
    client = genai.Client(api_key="wrong", http_options=options)
    with pytest.raises(errors.ClientError) as refused:
        client.batches.get(name="batches/x")
    assert refused.value.code == 401 and refused.value.status == "UNAUTHENTICATED"


@pytest.fixture
def gemini(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_GOOG_API_KEY=Token.objects.get_or_create(user=user)[0].key)
    return client


def requests_of(*items: Any) -> dict[str, Any]:
    return {"batch": {"inputConfig": {"requests": {"requests": list(items)}}}}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ([], "body must be an object"),
        ({"batch": "x"}, "batch must be an object"),
        ({"batch": {}}, "batch.inputConfig.requests.requests is required"),
        (requests_of(), "batch.inputConfig.requests.requests is required"),
        (requests_of("x"), "requests[0] must be an object"),
        (requests_of({"metadata": {}}), "requests[0].request: contents is required"),
        (requests_of({"request": {"contents": "a cat"}, "metadata": []}), "requests[0].metadata must be an object"),
        ({"batch": {"displayName": 3, "inputConfig": {}}}, "displayName must be a string"),
    ],
)
def test_bad_batches_are_400_invalid_argument(gemini: APIClient, add_key: Any, body: Any, words: str) -> None:
    add_key()
    answer = gemini.post(f"/v1beta/models/{MODEL}:batchGenerateContent", body, format="json")
    assert answer.status_code == 400, answer.content
    assert answer.json()["error"]["status"] == "INVALID_ARGUMENT" and words in answer.json()["error"]["message"]
    assert not Job.objects.exists()


def test_pages_and_unknown_models_answer_in_geminis_shape(gemini: APIClient) -> None:
    assert gemini.get("/v1/batches?pageSize=x").status_code == 400
    assert gemini.get("/v1/batches?pageSize=-3&pageToken=-1").json() == {"operations": []}
    unknown = gemini.post("/v1beta/models/gpt-image-1:batchGenerateContent", requests_of(), format="json")
    assert unknown.status_code == 404 and unknown.json()["error"]["status"] == "NOT_FOUND"
    assert gemini.get("/v1/batches/x/y").json()["error"]["status"] == "NOT_FOUND"  # not the HTML 404


def test_batches_under_an_api_version_gemini_hasnt_answer_its_json_404(client: Any) -> None:
    for method, path in (("get", "/AAA/batches"), ("get", "/AAA/batches/0"), ("delete", "/v2/batches/0")):
        response = getattr(client, method)(path)
        assert response.status_code == 404 and response.json()["error"]["status"] == "NOT_FOUND", path
