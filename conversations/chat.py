"""What the chat page reads and does besides starting a turn: threads, a retry, deleting a conversation.

The page starts turns with pipeline.start(..., RunMode.BACKGROUND): the request returns at once and
the page polls the job.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db.models import Prefetch, QuerySet

from conversations import pipeline
from conversations.models import Conversation, Job
from conversations.references import Reference, limit
from gallery.models import Image
from keys import pool
from keys.gemini.catalogue import MODELS
from keys.models import ApiKey

log = logging.getLogger(__name__)

THREAD_ATTEMPTS = 5


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
        ),
        pipeline.RunMode.BACKGROUND,
    )


def delete_conversation(conversation: Conversation) -> None:
    """Delete a conversation with its messages, jobs and images, and the files no other image uses."""
    files = list(Image.objects.filter(conversation=conversation).values_list("file", "thumbnail").distinct())
    conversation.delete()
    for file, thumbnail in files:
        Image.delete_unreferenced_files(file, thumbnail)


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
