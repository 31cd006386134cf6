"""The emulator's Batch API and Files API, driven by the real google-genai SDK over a real socket."""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from google import genai
from google.genai import errors, types
from PIL import Image

from keys.gemini.emulator import GeminiEmulator

MODEL = "gemini-3.1-flash-image"
ENDED = {
    types.JobState.JOB_STATE_SUCCEEDED,
    types.JobState.JOB_STATE_FAILED,
    types.JobState.JOB_STATE_CANCELLED,
    types.JobState.JOB_STATE_EXPIRED,
}


@pytest.fixture(scope="module")
def server() -> Iterator[GeminiEmulator]:
    # This module's own emulator: its batches, files and log see only these tests.
    with GeminiEmulator() as emu:
        yield emu


@pytest.fixture
def emu(server: GeminiEmulator) -> GeminiEmulator:
    server.clear()
    server.batch_seconds = 0.3
    return server


def client(emu: GeminiEmulator, key: str = "emu-ok-0001") -> genai.Client:
    # Keep the Client referenced: once collected it closes the HTTP client its modules use.
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=emu.url))


def item(prompt: str, key: str, **config: Any) -> types.InlinedRequest:
    return types.InlinedRequest(
        contents=[types.Content(role="user", parts=[types.Part(text=prompt)])],
        config=types.GenerateContentConfig(**{"response_modalities": ["IMAGE"], **config}),
        metadata={"key": key},
    )


def ended(sdk: genai.Client, name: str, timeout: float = 10.0) -> types.BatchJob:
    deadline = time.monotonic() + timeout
    while (job := sdk.batches.get(name=name)).state not in ENDED:
        assert time.monotonic() < deadline, job.state
        time.sleep(0.05)
    return job


def image_bytes(response: types.GenerateContentResponse | None) -> bytes:
    assert response is not None and response.candidates
    parts = response.candidates[0].content.parts if response.candidates[0].content else None
    [part] = parts or []
    assert part.inline_data and part.inline_data.mime_type == "image/png" and part.inline_data.data
    return part.inline_data.data


def http(emu: GeminiEmulator, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(emu.url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_batch_answers_each_inline_request_in_order_as_generate_content_would(emu: GeminiEmulator) -> None:
    sdk = client(emu)
    job = sdk.batches.create(
        model=MODEL, src=[item("a red fox", "a"), item("a blue whale", "b")], config={"display_name": "x"}
    )
    assert (job.state, job.display_name, job.model) == (types.JobState.JOB_STATE_PENDING, "x", f"models/{MODEL}")
    job = ended(sdk, str(job.name))
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED and job.end_time is not None
    answers = job.dest.inlined_responses if job.dest else None
    assert [answer.metadata for answer in answers or []] == [{"key": "a"}, {"key": "b"}]
    fox, whale = (image_bytes(answer.response) for answer in answers or [])
    assert Image.open(io.BytesIO(fox)).size == (1024, 1024)
    online = sdk.models.generate_content(model=MODEL, contents="a red fox", config={"response_modalities": ["IMAGE"]})
    assert fox == image_bytes(online) != whale  # the same function drew it


def test_the_wire_is_googles_long_running_operation(emu: GeminiEmulator) -> None:
    request = {"contents": [{"parts": [{"text": "a kite"}]}]}
    body = {"batch": {"displayName": "wire", "inputConfig": {"requests": {"requests": [{"request": request}]}}}}
    status, created = http(emu, "POST", f"/v1beta/models/{MODEL}:batchGenerateContent?key=emu-ok-0001", body)
    assert status == 200 and created["name"].startswith("batches/") and "done" not in created
    metadata = created["metadata"]
    assert metadata["@type"] == "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
    assert (metadata["name"], metadata["model"], metadata["displayName"]) == (
        created["name"],
        f"models/{MODEL}",
        "wire",
    )
    assert (metadata["state"], metadata["batchStats"]) == (
        "BATCH_STATE_PENDING",
        {"requestCount": "1", "pendingRequestCount": "1"},
    )
    time.sleep(0.35)
    status, done = http(emu, "GET", f"/v1beta/{created['name']}?key=emu-ok-0001")
    assert status == 200 and done["done"] is True
    assert done["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
    assert done["metadata"]["batchStats"] == {"requestCount": "1", "successfulRequestCount": "1"}
    assert done["response"]["@type"].endswith(".GenerateContentBatchOutput")
    assert done["response"]["inlinedResponses"] == done["metadata"]["output"]["inlinedResponses"]
    [answer] = done["response"]["inlinedResponses"]["inlinedResponses"]
    assert answer["response"]["candidates"][0]["content"]["parts"][0]["text"] == "Here is your image of: a kite"


def test_a_batch_runs_after_a_third_of_its_time_which_may_change_while_it_waits(emu: GeminiEmulator) -> None:
    emu.batch_seconds = 3.0
    sdk = client(emu)
    name = str(sdk.batches.create(model=MODEL, src=[item("a tram", "a")]).name)
    assert sdk.batches.get(name=name).state == types.JobState.JOB_STATE_PENDING
    time.sleep(1.1)
    assert sdk.batches.get(name=name).state == types.JobState.JOB_STATE_RUNNING
    emu.batch_seconds = 0.3
    assert sdk.batches.get(name=name).state == types.JobState.JOB_STATE_SUCCEEDED


def test_its_items_are_answered_once_however_many_ask_at_once(emu: GeminiEmulator) -> None:
    sdk = client(emu)
    name = str(sdk.batches.create(model=MODEL, src=[item("a lamp", "a")]).name)
    time.sleep(0.35)
    seen: list[str] = []

    def read() -> None:
        own = client(emu)  # one client per thread, as concurrent callers would have
        job = own.batches.get(name=name)
        answers = job.dest.inlined_responses if job.dest else None
        seen.append(str(answers[0].response.response_id if answers and answers[0].response else ""))

    threads = [threading.Thread(target=read) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 6 and seen[0] and set(seen) == {seen[0]}


def test_prompt_markers_and_bad_requests_shape_single_items(emu: GeminiEmulator) -> None:
    sdk = client(emu)
    src = [
        item("a boat", "ok"),
        item("[block] a boat", "blocked"),
        item("[itemerror] a boat", "failed"),
        item("a boat", "bad", image_config={"aspect_ratio": "7:5"}),
        item("[noimage] a boat", "text", response_modalities=["TEXT", "IMAGE"]),
    ]
    job = ended(sdk, str(sdk.batches.create(model=MODEL, src=src).name))
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED
    answers = job.dest.inlined_responses if job.dest else None
    ok, blocked, failed, bad, text = answers or []
    assert image_bytes(ok.response) and ok.error is None
    assert blocked.response and blocked.response.prompt_feedback and not blocked.response.candidates
    assert blocked.response.prompt_feedback.block_reason == types.BlockedReason.PROHIBITED_CONTENT
    assert failed.response is None and failed.error and failed.error.code == 500
    assert str(failed.error.message).startswith("An internal error has occurred")
    assert bad.response is None and bad.error and bad.error.code == 400
    assert "Unsupported aspect ratio: 7:5" in str(bad.error.message)
    assert text.response and text.response.text == "(text only) You said: [noimage] a boat"
    assert [answer.metadata for answer in (ok, blocked, failed, bad, text)] == [
        {"key": key} for key in ("ok", "blocked", "failed", "bad", "text")
    ]
    _, operation = http(emu, "GET", f"/v1beta/{job.name}?key=emu-ok-0001")
    assert operation["metadata"]["batchStats"] == {
        "requestCount": "5",
        "successfulRequestCount": "3",
        "failedRequestCount": "2",
    }


@pytest.mark.parametrize(
    ("marker", "state"),
    [("[batchexpire]", types.JobState.JOB_STATE_EXPIRED), ("[batchfail]", types.JobState.JOB_STATE_FAILED)],
)
def test_a_marker_in_the_first_item_ends_the_whole_batch(
    emu: GeminiEmulator, marker: str, state: types.JobState
) -> None:
    sdk = client(emu)
    job = ended(sdk, str(sdk.batches.create(model=MODEL, src=[item(f"{marker} a", "a"), item("b", "b")]).name))
    assert job.state == state and job.dest is None
    _, operation = http(emu, "GET", f"/v1beta/{job.name}?key=emu-ok-0001")
    assert operation["done"] is True and "response" not in operation
    assert operation.get("error", {}).get("code") == (500 if marker == "[batchfail]" else None)


def test_batches_are_listed_newest_first_page_by_page(emu: GeminiEmulator) -> None:
    sdk = client(emu)
    names = [str(sdk.batches.create(model=MODEL, src=[item(f"list {n}", "a")]).name) for n in range(3)]
    status, page = http(emu, "GET", "/v1beta/batches?pageSize=2&key=emu-ok-0001")
    assert status == 200 and [op["name"] for op in page["operations"]] == names[::-1][:2]
    assert page["nextPageToken"]
    listed = [str(job.name) for job in sdk.batches.list(config={"page_size": 2})]
    assert listed[:3] == names[::-1]


def test_a_cancelled_batch_stays_cancelled_and_a_deleted_one_is_gone(emu: GeminiEmulator) -> None:
    emu.batch_seconds = 60.0
    sdk = client(emu)
    name = str(sdk.batches.create(model=MODEL, src=[item("a kettle", "a")]).name)
    sdk.batches.cancel(name=name)
    emu.batch_seconds = 0.0
    job = sdk.batches.get(name=name)
    assert job.state == types.JobState.JOB_STATE_CANCELLED and job.dest is None
    sdk.batches.delete(name=name)
    with pytest.raises(errors.ClientError) as caught:
        sdk.batches.get(name=name)
    assert (caught.value.code, caught.value.status) == (404, "NOT_FOUND")


def test_an_unknown_batch_is_not_found(emu: GeminiEmulator) -> None:
    sdk = client(emu)
    with pytest.raises(errors.ClientError) as caught:
        sdk.batches.get(name="batches/nosuchbatch")
    assert (caught.value.code, caught.value.status, caught.value.message) == (
        404,
        "NOT_FOUND",
        "Requested entity was not found.",
    )


def test_a_file_batch_answers_into_a_jsonl_file(emu: GeminiEmulator) -> None:
    sdk = client(emu)
    lines = [
        {"key": "one", "request": {"contents": [{"parts": [{"text": "a pear"}]}]}},
        {"key": "two", "request": {"contents": []}},
        {"key": "three", "request": {"contents": [{"parts": [{"text": "[itemerror] a plum"}]}]}},
    ]
    jsonl = "".join(json.dumps(line) + "\n" for line in lines).encode()
    uploaded = sdk.files.upload(file=io.BytesIO(jsonl), config={"mime_type": "application/jsonl"})
    assert (uploaded.state, uploaded.source, uploaded.size_bytes) == (
        types.FileState.ACTIVE,
        types.FileSource.UPLOADED,
        len(jsonl),
    )
    job = ended(sdk, str(sdk.batches.create(model=MODEL, src=str(uploaded.name)).name))
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED and job.dest and job.dest.file_name
    answers = [json.loads(line) for line in sdk.files.download(file=job.dest.file_name).splitlines()]
    assert [(a["key"], sorted(set(a) - {"key"})) for a in answers] == [
        ("one", ["response"]),
        ("two", ["error"]),
        ("three", ["error"]),
    ]
    assert answers[0]["response"]["candidates"][0]["content"]["parts"][0]["text"] == "Here is your image of: a pear"
    assert (answers[1]["error"]["code"], answers[2]["error"]["code"]) == (400, 500)
    output = sdk.files.get(name=job.dest.file_name)
    assert output.source == types.FileSource.GENERATED and output.mime_type == "application/jsonl"


def test_an_upload_in_chunks_comes_back_whole(emu: GeminiEmulator) -> None:
    data = bytes(range(256)) * (9 * 1024 * 1024 // 256)  # over the SDK's 8 MB chunk: two chunks
    sdk = client(emu)
    uploaded = sdk.files.upload(file=io.BytesIO(data), config={"mime_type": "application/octet-stream"})
    assert sdk.files.get(name=str(uploaded.name)).size_bytes == len(data)
    assert sdk.files.download(file=str(uploaded.name)) == data


def test_a_batch429_key_may_not_batch_but_still_generates(emu: GeminiEmulator) -> None:
    sdk = client(emu, "emu-batch429-0001")
    with pytest.raises(errors.ClientError) as caught:
        sdk.batches.create(model=MODEL, src=[item("a", "a"), item("b", "b")])
    assert (caught.value.code, caught.value.status) == (429, "RESOURCE_EXHAUSTED")
    assert sdk.models.generate_content(model=MODEL, contents="a bell").parts
    batch, online = emu.requests
    assert (batch["api"], batch["items"], batch["status"]) == ("batch", 2, 429)
    assert (online["api"], online["status"]) == ("gemini", 200)


def test_the_log_shows_a_batch_once_and_none_of_its_items(emu: GeminiEmulator) -> None:
    sdk = client(emu)
    ended(sdk, str(sdk.batches.create(model=MODEL, src=[item("x", "a"), item("y", "b"), item("z", "c")]).name))
    [entry] = emu.requests
    assert (entry["api"], entry["model"], entry["items"], entry["status"]) == ("batch", MODEL, 3, 200)


def test_an_invalid_key_may_not_batch(emu: GeminiEmulator) -> None:
    sdk = client(emu, "emu-invalid-0001")
    with pytest.raises(errors.ClientError) as caught:
        sdk.batches.create(model=MODEL, src=[item("a", "a")])
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
    assert caught.value.message == "API key not valid. Please pass a valid API key."


def test_a_batch_needs_inline_requests_or_an_uploaded_file(emu: GeminiEmulator) -> None:
    sdk = client(emu)
    with pytest.raises(errors.ClientError) as caught:
        sdk.batches.create(model=MODEL, src="files/neveruploaded")
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")


def test_inline_requests_over_20_mb_are_refused(emu: GeminiEmulator) -> None:
    sdk = client(emu)
    with pytest.raises(errors.ClientError) as caught:
        sdk.batches.create(model=MODEL, src=[item("x" * (21 * 1024 * 1024), "a")])
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
    assert caught.value.message == "Request payload size exceeds the limit: 20971520 bytes."
