"""The chat page's side of the pipeline: start a turn without blocking the page, read a thread, retry, delete.

The page is one more door: it builds a GenerationRequest, submits it, and hands the job to the
django-q2 cluster ("queue") or to a background thread of the web process ("thread"), per
NANOCLONE_CHAT_EXECUTION. Either way the request returns at once and the page polls the job.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import User
from django.db import OperationalError, close_old_connections, connections, transaction
from django.db.models import Prefetch, QuerySet

from conversations import pipeline
from conversations.models import Conversation, Job
from gallery import storage
from gallery.models import Image
from keys import pool
from keys.models import ApiKey
from nanoclone.gemini_models import MODELS

log = logging.getLogger(__name__)

THREAD_ATTEMPTS = 5


def start(request: pipeline.GenerationRequest) -> Job:
    """Submit a turn and start running it in the background. Raises pipeline.InvalidRequest."""
    job = pipeline.submit(request)
    if settings.CHAT_EXECUTION == "thread":
        job_id = job.id
        transaction.on_commit(lambda: _start_thread(job_id))
    else:
        pipeline.enqueue(job)
    return job


def _start_thread(job_id: uuid.UUID) -> None:
    threading.Thread(target=_run_in_thread, args=(job_id,), name=f"chat-job-{job_id}", daemon=True).start()


def _run_in_thread(job_id: uuid.UUID) -> None:
    close_old_connections()
    try:
        for attempt in range(1, THREAD_ATTEMPTS + 1):
            try:
                pipeline.run(job_id)
                return
            except OperationalError as error:
                # The database was busy (an SQLite lock): run() claims atomically and is safe to
                # repeat, as the queue's redelivery would.
                log.warning("Chat job %s: database busy (%s), try %d of %d", job_id, error, attempt, THREAD_ATTEMPTS)
                time.sleep(0.2 * attempt)
        log.error("Chat job %s could not start: the database stayed busy", job_id)
    finally:
        # This thread's connection would otherwise stay open until the process ends.
        connections.close_all()


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
    """One of the user's turns, ready to render. Raises Job.DoesNotExist."""
    return _with_contents(Job.objects.filter(user=user)).get(pk=job_id)


def retry(job: Job) -> Job:
    """Run a finished turn again in the same conversation, with the same prompt, settings and references."""
    inputs = Image.objects.filter(message=job.user_message, role=Image.Role.INPUT).order_by("index")
    references = list(inputs.values_list("pk", flat=True))
    return start(
        pipeline.GenerationRequest(
            user=job.user,
            prompt=job.user_message.text,
            model=job.model,
            aspect_ratio=job.aspect_ratio,
            resolution=job.resolution,
            conversation_id=job.conversation_id,
            reference_image_ids=list(references),
            num_images=job.num_images,
            source="chat",
        )
    )


def delete_conversation(conversation: Conversation) -> None:
    """Delete a conversation with its messages, jobs and images, and the files no other image uses."""
    files = list(Image.objects.filter(conversation=conversation).values_list("file", "thumbnail").distinct())
    conversation.delete()
    for file, thumbnail in files:
        storage.delete_unreferenced(file, thumbnail)


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
            "max_reference_images": min(settings.MAX_REFERENCE_IMAGES, model.max_reference_images),
        }
        for model in MODELS.values()
    ]
