"""What the chat asks of the conversations layer: cancelling a turn, even one being made, and
running a turn again with the history it had."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conversations import chat, pipeline
from conversations.models import Job
from gallery.models import Image
from tests.conftest import emulator_requests

pytestmark = pytest.mark.django_db


def submit(user: Any, prompt: str, **fields: Any) -> Job:
    return pipeline.submit(pipeline.GenerationRequest(user=user, prompt=prompt, source="chat", **fields))


def files(settings: Any) -> list[Path]:
    return [path for path in Path(settings.MEDIA_ROOT).rglob("*") if path.is_file()]


def test_a_turn_cancelled_while_generating_stops_and_keeps_no_image(
    user: Any, add_key: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    add_key()
    job = submit(user, "two castles", num_images=2)
    cancelled: list[bool] = []

    def cancel_after_the_first_image(moving: Job) -> None:
        # The run reports each stored image; the person cancels once the first one is there.
        if not cancelled and Image.objects.filter(job=moving).exists():
            cancelled.append(chat.cancel(Job.objects.get(pk=moving.pk)))

    with django_capture_on_commit_callbacks(execute=True):  # the stored image's file goes once the cancel commits
        finished = pipeline.run(job.id, on_progress=cancel_after_the_first_image)
    assert cancelled == [True]
    assert finished is not None and finished.state == Job.State.CANCELLED
    assert finished.error == "Cancelled while generating."
    assert not Image.objects.exists() and files(settings) == []


def test_a_finished_turn_cannot_be_cancelled(user: Any, add_key: Any) -> None:
    add_key()
    job = pipeline.run(submit(user, "a castle").id)
    assert job is not None and not chat.cancel(job)
    assert Job.objects.get().state == Job.State.SUCCEEDED


def test_only_a_pending_job_is_cancelled_for_the_apis(user: Any) -> None:
    job = submit(user, "a castle")
    Job.objects.filter(pk=job.pk).update(state=Job.State.RUNNING)
    job.refresh_from_db()
    assert not pipeline.cancel(job)  # the jobs APIs: can_cancel only before it starts
    assert Job.objects.get().state == Job.State.RUNNING


def test_a_turn_run_again_gets_the_history_it_had(user: Any, add_key: Any, emu: Any) -> None:
    add_key()
    first = pipeline.run(submit(user, "a red bicycle").id)
    assert first is not None
    second = pipeline.run(submit(user, "make it blue", conversation_id=first.conversation_id).id)
    assert second is not None
    again = pipeline.run(chat.regenerate(second).id)
    assert again is not None and again.user_message.text == "make it blue"
    once_more = pipeline.run(chat.regenerate(again).id)
    assert once_more is not None and once_more.state == Job.State.SUCCEEDED
    # Each run of "make it blue" edits the red bicycle (3 turns: prompt, image, prompt), never a blue one.
    assert [(r["turns"], r["inline_images"]) for r in emulator_requests(emu)] == [(1, 0), (3, 1), (3, 1), (3, 1)]
