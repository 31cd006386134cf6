"""Rules the pipeline owns for every door: the default model, a continued conversation's model,
callback URLs, the no-usable-key refusal of background work, and the run modes."""

from __future__ import annotations

import base64
import threading
from typing import Any

import pytest
from django.db import OperationalError, connection

from conversations import pipeline
from conversations.models import Job
from conversations.pipeline import running
from gallery import storage
from keys import pool
from keys.catalogue import default_model, resolve_model
from keys.gemini import client as gemini

pytestmark = pytest.mark.django_db


def request(user: Any, **fields: Any) -> pipeline.GenerationRequest:
    return pipeline.GenerationRequest(user=user, prompt="a lighthouse", **fields)


def test_no_model_means_the_configured_default(settings: Any, user: Any) -> None:
    settings.DEFAULT_MODEL = "nano-banana-pro"  # an alias is fine
    assert resolve_model(None) == resolve_model("") == default_model() == resolve_model("gemini-3-pro-image")
    assert pipeline.submit(request(user)).model == "gemini-3-pro-image"


def test_an_unset_default_is_the_catalogues(settings: Any) -> None:
    settings.DEFAULT_MODEL = ""
    assert default_model().id == "gemini-nano-banana-2.1"


def test_a_continued_conversation_keeps_its_model(user: Any) -> None:
    first = pipeline.submit(request(user, model="nano-banana-pro"))
    follow_up = pipeline.submit(request(user, conversation_id=first.conversation_id))
    assert follow_up.model == "gemini-3-pro-image"
    switched = pipeline.submit(request(user, conversation_id=first.conversation_id, model="nano-banana-2"))
    assert switched.model == "gemini-3.1-flash-image"


@pytest.mark.parametrize(
    "url", ["http://example.com/hook", "https://127.0.0.1/hook", "https://10.0.0.1/hook", "ftp://example.com/x"]
)
def test_a_callback_url_is_checked_before_anything_is_recorded(user: Any, url: str) -> None:
    with pytest.raises(pipeline.InvalidRequest) as refused:
        pipeline.submit(request(user, callback_url=url))
    assert refused.value.field == "callback_url"
    assert not Job.objects.exists()


def test_background_work_is_refused_when_no_key_could_serve_it(user: Any) -> None:
    with pytest.raises(pool.NoUsableKey, match="No Gemini API key is configured"):
        pipeline.start(request(user), pipeline.RunMode.QUEUE)
    assert not Job.objects.exists()


def test_inline_and_chat_work_is_recorded_and_fails_with_the_reason(user: Any, settings: Any) -> None:
    settings.CHAT_EXECUTION = "queue"
    inline = pipeline.start(request(user), pipeline.RunMode.INLINE)
    assert (inline.state, inline.error_code, inline.failure_status) == (Job.State.FAILED, "no_usable_key", 503)
    chat = pipeline.start(request(user), pipeline.RunMode.BACKGROUND)
    assert chat.state == Job.State.PENDING  # queued; the thread shows the failure when it runs


def test_inline_work_reports_its_progress(user: Any, add_key: Any) -> None:
    add_key()
    seen: list[tuple[str, int]] = []
    job = pipeline.start(
        request(user), pipeline.RunMode.INLINE, on_progress=lambda job: seen.append((job.phase, job.progress))
    )
    assert job.state == Job.State.SUCCEEDED
    # Claimed as it is recorded, with its key: it starts out generating; the last step is the end.
    assert [phase for phase, _ in seen] == ["generating", "saving", "done"]
    assert [progress for _, progress in seen] == sorted(progress for _, progress in seen)


def test_inline_work_writes_no_progress_nobody_reads(user: Any, add_key: Any) -> None:
    """GIVEN a synchronous door's job WHEN it runs THEN its steps reach the caller, not the database:
    the row goes from recorded (claimed, generating) straight to done."""
    add_key()
    phases: list[str] = []
    job = pipeline.start(
        request(user),
        pipeline.RunMode.INLINE,
        on_progress=lambda job: phases.append(Job.objects.values_list("phase", flat=True).get(pk=job.pk)),
    )
    assert job.state == Job.State.SUCCEEDED and job.attempts == 1
    assert phases == ["generating", "generating", "done"]  # the row never said "saving"


@pytest.mark.parametrize(("num_images", "on_this_thread"), [(1, True), (3, False)])
def test_one_image_is_called_for_on_the_jobs_own_thread_several_at_once(
    user: Any, add_key: Any, monkeypatch: Any, num_images: int, on_this_thread: bool
) -> None:
    """GIVEN a job of one image WHEN it runs THEN Gemini is called on the job's own thread (no thread
    pool); several images are called for at once, on a thread each."""
    add_key()
    callers: list[str] = []
    real_generate = gemini.generate

    def watched(*args: Any) -> Any:
        callers.append(threading.current_thread().name)
        return real_generate(*args)

    monkeypatch.setattr(gemini, "generate", watched)
    job = pipeline.start(request(user, num_images=num_images), pipeline.RunMode.INLINE)
    assert job.state == Job.State.SUCCEEDED and len(pipeline.output_images(job)) == num_images
    here = threading.current_thread().name
    assert (callers == [here]) if on_this_thread else (len(callers) == 3 and here not in callers)


def test_the_answer_reuses_geminis_base64_without_reading_the_file_back(
    user: Any, add_key: Any, monkeypatch: Any
) -> None:
    """GIVEN an image stored as Gemini sent it WHEN a synchronous door answers THEN its base64 is
    Gemini's own text (the same bytes as the stored file), with no read of the file."""
    add_key()
    job = pipeline.start(request(user), pipeline.RunMode.INLINE)
    (image,) = pipeline.output_images(job)
    stored = storage.read(image.file)

    def no_read(name: str) -> bytes:
        raise AssertionError(f"{name} was read back")

    monkeypatch.setattr(storage, "read", no_read)
    assert base64.b64decode(image.base64(), validate=True) == stored
    again = Job.objects.get(pk=job.pk)  # a job read from its row has no base64 in hand: it reads the file
    with pytest.raises(AssertionError, match="read back"):
        pipeline.output_images(again)[0].base64()


def connections_in_use() -> int:
    stats = connection.pool.get_stats()  # type: ignore[attr-defined]  # PostgreSQL's, not in the stubs
    return int(stats["pool_size"] - stats["pool_available"])


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the connection pool is PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_a_generation_waiting_on_gemini_holds_no_database_connection(user: Any, add_key: Any, monkeypatch: Any) -> None:
    """GIVEN PostgreSQL's connection pool WHEN a generation waits on Gemini THEN its thread has given
    its connection back, so a hundred requests in flight don't take a hundred of max_connections."""
    add_key()
    held_while_called: list[int] = []
    called = gemini.generate

    def generate(*args: Any) -> gemini.GeminiAnswer:
        held_while_called.append(connections_in_use())
        return called(*args)

    monkeypatch.setattr(gemini, "generate", generate)
    connection.close()  # this thread's own goes back to the pool too
    job = pipeline.start(request(user), pipeline.RunMode.INLINE)
    assert job.state == Job.State.SUCCEEDED
    assert held_while_called == [0]
    connection.close()
    assert connections_in_use() == 0


@pytest.mark.django_db(transaction=True)
def test_a_thread_run_stopped_by_a_busy_database_after_its_claim_is_run_again(
    user: Any, add_key: Any, monkeypatch: Any
) -> None:
    """GIVEN a chat job run on a thread WHEN the database is busy just after the run claimed it
    THEN the thread's next try claims it again and finishes it (it was left running, leased)."""
    add_key()
    job = pipeline.submit(request(user))
    ran = running.run_claimed
    tries: list[int] = []

    def busy_once(*args: Any, **kwargs: Any) -> Job:
        tries.append(1)
        if len(tries) == 1:
            raise OperationalError("database table is locked")
        return ran(*args, **kwargs)

    monkeypatch.setattr(running, "run_claimed", busy_once)
    running._run_in_thread(job.id)
    job.refresh_from_db()
    assert (job.state, job.attempts, len(tries)) == (Job.State.SUCCEEDED, 2, 2)
