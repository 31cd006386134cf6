"""Rules the pipeline owns for every door: the default model, a continued conversation's model,
callback URLs, the no-usable-key refusal of background work, and the run modes."""

from __future__ import annotations

from typing import Any

import pytest

from conversations import pipeline
from conversations.models import Job
from keys import pool
from keys.gemini.catalogue import default_model, resolve_model

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
    assert [phase for phase, _ in seen] == ["initializing", "generating", "saving"]
    assert [progress for _, progress in seen] == sorted(progress for _, progress in seen)
