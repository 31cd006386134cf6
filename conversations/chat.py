"""What the chat page reads and does besides starting a turn: threads, regenerating and cancelling a
turn, waiting for a turn to move, deleting a conversation.

The page starts turns with pipeline.start(..., RunMode.BACKGROUND): the request returns at once and
the page asks for the turn again, held here until the job moves (wait_for_change: long polling).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Prefetch, QuerySet

from conversations import pipeline
from conversations.background import release_connection
from conversations.models import Conversation, Job
from conversations.references import Reference, limit
from conversations.signals import job_finished, job_progress
from gallery.models import Image
from keys import pool
from keys.catalogue import MODELS
from keys.models import ApiKey

log = logging.getLogger(__name__)

THREAD_ATTEMPTS = 5
# A job on the cluster (another process) is seen moving by re-reading its row this often; one run
# by this process wakes its waiters at once through the pipeline's signals.
POLL_SECONDS = 0.1


def _with_contents(jobs: QuerySet[Job]) -> QuerySet[Job]:
    """Jobs with what a turn shows (prompt, references, answer, images) in a fixed number of queries."""
    return jobs.select_related("user_message", "assistant_message").prefetch_related(
        Prefetch(
            "user_message__images",
            queryset=Image.objects.filter(role=Image.Role.INPUT).order_by("index"),
            to_attr="inputs",
        ),
        Prefetch("images", queryset=Image.objects.filter(role=Image.Role.OUTPUT).order_by("index"), to_attr="outputs"),
    )


def turns(conversation: Conversation) -> QuerySet[Job]:
    """The conversation's turns, oldest first: one job each."""
    return _with_contents(Job.objects.filter(conversation=conversation)).order_by("created_at")


def turn(user: User, job_id: uuid.UUID | str) -> Job:
    """One of the user's turns, ready to render (a waiting one with its place in line). Raises
    Job.DoesNotExist."""
    job = _with_contents(Job.objects.filter(user=user)).get(pk=job_id)
    with_place(job)
    return job


def with_place(job: Job) -> Job:
    """The job, with its place in the queue's line when it waits there (job.place): in the chat's
    queue mode; a turn run on a thread of its own (thread mode) never waits in line."""
    waits = job.state == Job.State.PENDING and settings.CHAT_EXECUTION == "queue"
    job.place = pipeline.place_in_line(job) if waits else None  # type: ignore[attr-defined]
    return job


_VERSIONED = ("state", "phase", "progress")  # the fields of a turn its version() is made of
PLACE_SECONDS = 1.0  # how often a waiting turn's place in line is looked at again


def version(job: Job) -> str:
    """What the page has seen of a turn: a change of state, phase, progress or place in line is news."""
    place = getattr(job, "place", None)
    return ".".join(str(getattr(job, name)) for name in _VERSIONED) + (f".{place}" if place else "")


_moves = threading.Condition()
_moved = 0  # how many job moves this process has seen


def _job_moved(sender: Any, job: Job, **kwargs: Any) -> None:
    global _moved
    with _moves:
        _moved += 1
        _moves.notify_all()


job_progress.connect(_job_moved, dispatch_uid="conversations.chat.job_moved")
job_finished.connect(_job_moved, dispatch_uid="conversations.chat.job_finished")


def wait_for_change(user: User, job_id: uuid.UUID | str, seen: str, timeout: float) -> Job:
    """The user's turn once its version() is no longer `seen`, or as it is after `timeout` seconds.
    Raises Job.DoesNotExist."""
    deadline = time.monotonic() + timeout
    row = Job.objects.filter(user=user, pk=job_id).only(*_VERSIONED, "priority")
    placed_at = 0.0
    place = None
    while True:
        with _moves:
            moved = _moved
        now = row.first()
        if now is None:
            raise Job.DoesNotExist(f"No job {job_id}.")
        if now.state == Job.State.PENDING and time.monotonic() - placed_at >= PLACE_SECONDS:
            place, placed_at = with_place(now).place, time.monotonic()  # type: ignore[attr-defined]
        now.place = place if now.state == Job.State.PENDING else None  # type: ignore[attr-defined]
        left = deadline - time.monotonic()
        if version(now) != seen or left <= 0:
            return turn(user, job_id)
        release_connection()  # a poll may wait most of a minute
        with _moves:  # a move between the read and here is counted in _moved: no wake-up is lost
            if _moved == moved:
                _moves.wait(timeout=min(POLL_SECONDS, left))


def regenerate(job: Job) -> Job:
    """Run a finished turn again, as a new turn at the end of its conversation: the same prompt,
    settings, count, references and price, and the history the turn had (so Gemini makes new images
    for the prompt rather than editing the turn's own)."""
    inputs = Image.objects.filter(message=job.user_message, role=Image.Role.INPUT).order_by("index")
    references: list[Reference] = [str(pk) for pk in inputs.values_list("pk", flat=True)]
    return pipeline.start(
        pipeline.GenerationRequest(
            user=job.user,
            prompt=job.user_message.text,
            model=job.model,
            aspect_ratio=job.aspect_ratio,
            resolution=job.resolution,
            thinking_level=job.thinking_level,
            grounding=job.grounding,
            conversation_id=job.conversation_id,
            references=references,
            num_images=job.num_images,
            source="chat",
            options={
                pipeline.REGENERATES: str(job.options.get(pipeline.REGENERATES) or job.id),
                pipeline.DISPLAY_RENDITION: True,
            },
            priority=Job.Priority.BATCH if job.priority == Job.Priority.BATCH else None,
        ),
        pipeline.RunMode.BACKGROUND,
    )


def continues_editing(image: Image) -> bool:
    """Whether "Continue editing" an image goes on in its conversation: the image is of the turn the
    conversation's next prompt edits; otherwise a new chat starts with the image as its reference."""
    if image.conversation_id is None:
        return False
    edited = pipeline.edited_next(image.conversation_id)
    return edited is not None and edited.job_id == image.job_id


def cancel(job: Job) -> bool:
    """Stop a turn of one's own chat that hasn't finished, started or not; False when it had finished."""
    return pipeline.cancel(job, running=True)


def delete_conversation(conversation: Conversation) -> None:
    """Delete a conversation with its messages, jobs and images, and the files no other image uses."""
    with transaction.atomic():
        Image.objects.filter(conversation=conversation).delete_with_files()
        conversation.delete()


@dataclass(frozen=True)
class KeyNotice:
    message: str
    none_configured: bool


def key_notice() -> KeyNotice | None:
    """Why a prompt sent now would fail for lack of a key, or None when the pool can serve it."""
    if pool.usable_keys().exists():
        return None
    return KeyNotice(pool.explain_no_usable_key().message, not ApiKey.objects.exists())


def model_choices() -> list[dict[str, object]]:
    """What the prompt box offers: each model with only the aspect ratios and resolutions it supports."""
    return [
        {
            "id": model.id,
            "label": model.label,
            "aspect_ratios": list(model.aspect_ratios),
            "resolutions": list(model.resolutions),
            "max_reference_images": limit(model),
            "thinking_levels": list(model.thinking_levels),
            "grounding": model.grounding,
        }
        for model in MODELS.values()
    ]
