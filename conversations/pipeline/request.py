"""The generation request every door builds, and its validation: nothing is recorded for a request
that fails here."""

from __future__ import annotations

import datetime as dt
import enum
import math
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Min
from django.utils import timezone

from conversations import references, safe_fetch
from conversations.errors import BudgetExceeded, InvalidRequest
from conversations.models import Conversation, Job, QueueLimit
from keys import budgets, pool
from keys.catalogue import ImageModel, known_names, resolve_model

MAX_IMAGES_PER_JOB = 4


class RunMode(enum.Enum):
    INLINE = "inline"  # run now and return the finished job (synchronous doors)
    QUEUE = "queue"  # async API doors: refused at once when no key could serve, else on the cluster
    BACKGROUND = "background"  # the chat: always recorded (a failure shows in the thread), run per CHAT_EXECUTION


@dataclass
class EarlierTurn:
    """A turn of a chat the caller keeps itself: a stateless client (Gemini's API) sends the whole
    chat each time. submit() records these as the new conversation's first messages, images and
    thought signatures included, so history() passes them on and the job runs again from its id alone."""

    role: str  # "user" or "model", as Gemini names them
    text: str = ""
    text_signature: str = ""  # base64, as Gemini gave it
    # (any reference form, its thought signature or "")
    images: list[tuple[references.Reference, str]] = field(default_factory=list)


@dataclass
class GenerationRequest:
    user: User
    prompt: str
    # None: the conversation's model when it continues one, else NANOCLONE_DEFAULT_MODEL.
    model: str | None = None
    aspect_ratio: str | None = None
    resolution: str | None = None
    thinking_level: str | None = None  # one of the model's thinking_levels
    grounding: bool = False  # Google Search grounding, where the model offers it
    conversation_id: uuid.UUID | str | None = None
    # Any form a door received (conversations.references): bytes, base64, data: URIs, URLs,
    # NanoClone's own file links, gallery ids.
    references: list[references.Reference] = field(default_factory=list)
    references_field: str = "images"  # the door's name for them, in error messages
    history: list[EarlierTurn] = field(default_factory=list)  # only when starting a conversation
    # The client's Idempotency-Key: the same key and request again within IDEMPOTENCY_HOURS get the
    # first request's job back (no second upstream call); the key with another request is a 409.
    idempotency_key: str = ""
    num_images: int = 1
    source: str = "api"
    # Job.Priority; None: as the run mode says (the chat's turns are a person's, queued API work background).
    priority: int | None = None
    # With Job.Priority.BATCH: a batch Gemini didn't finish (expired, failed) is made online instead.
    batch_fallback: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    callback_url: str = ""
    # Where the caller reached us: recognises absolute links to our own files, and builds the
    # absolute URLs of callbacks and webhooks later, outside the request (options["base_url"]).
    base_url: str = ""


def validate_model(request: GenerationRequest, conversation: Conversation | None) -> tuple[ImageModel, str, str, str]:
    name = request.model
    if not name and conversation is not None:  # a continued conversation keeps its model
        turns = Job.objects.filter(conversation=conversation).order_by("-created_at")
        name = turns.values_list("model", flat=True).first()
    model = resolve_model(name)
    if model is None:
        raise InvalidRequest("model", f"Unknown model '{request.model}'. Known models: {known_names()}.")
    ratio = (request.aspect_ratio or "").strip()
    if ratio.lower() == "auto":
        ratio = ""
    if ratio and ratio not in model.aspect_ratios:
        raise InvalidRequest(
            "aspect_ratio",
            f"Aspect ratio '{ratio}' is not supported by {model.id}; use one of {', '.join(model.aspect_ratios)}.",
        )
    resolution = (request.resolution or "").strip().upper()
    if resolution and resolution not in model.resolutions:
        raise InvalidRequest(
            "resolution",
            f"Resolution '{request.resolution}' is not supported by {model.id}; "
            f"use one of {', '.join(model.resolutions)}.",
        )
    thinking = (request.thinking_level or "").strip().lower()
    if thinking and thinking not in model.thinking_levels:
        offered = f"use one of {', '.join(model.thinking_levels)}" if model.thinking_levels else "it has none"
        raise InvalidRequest("thinking_level", f"Thinking level '{thinking}' is not offered by {model.id}; {offered}.")
    if request.grounding and not model.grounding:
        raise InvalidRequest("grounding", f"{model.id} does not offer Google Search grounding.")
    return model, ratio, resolution, thinking


def validate_prompt(prompt: str) -> str:
    prompt = (prompt or "").strip()
    if not prompt:
        raise InvalidRequest("prompt", "Prompt is required and must not be empty.")
    if len(prompt) > settings.MAX_PROMPT_CHARS:
        raise InvalidRequest(
            "prompt",
            f"Prompt is too long ({len(prompt)} characters); the limit is about 2000 tokens "
            f"({settings.MAX_PROMPT_CHARS} characters).",
        )
    return prompt


def validate_num_images(num_images: int) -> None:
    if not 1 <= num_images <= MAX_IMAGES_PER_JOB:
        raise InvalidRequest("num_images", f"num_images must be between 1 and {MAX_IMAGES_PER_JOB}.")


def validate_callback(url: str) -> str:
    """A caller's callback URL, checked now so a bad one is refused at once (https, public, <= 2048)."""
    if not url:
        return ""
    try:
        return safe_fetch.check_callback_url(url)
    except (safe_fetch.UnsafeURLError, safe_fetch.FetchError) as error:
        raise InvalidRequest("callback_url", str(error)) from error


def conversation_of(request: GenerationRequest) -> Conversation | None:
    if not request.conversation_id:
        return None
    try:
        return Conversation.objects.get(pk=request.conversation_id, user=request.user)
    except (Conversation.DoesNotExist, ValueError, TypeError) as error:
        raise InvalidRequest(
            "conversationId", f"Conversation '{request.conversation_id}' was not found.", 404
        ) from error


def check_budget(request: GenerationRequest) -> None:
    """A user over their daily budget (images or estimated cost) is refused until the next quota day."""
    left = budgets.allowance(request.user.pk)
    if left is None:
        return
    reset = pool.next_quota_day_start()
    when = f"until midnight {settings.QUOTA_TIMEZONE} ({reset.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC)"
    if left.images_left is not None and request.num_images > left.images_left:
        raise BudgetExceeded(
            f"Your daily budget of {left.images_per_day} images is spent ({left.images_left} left, "
            f"{request.num_images} asked); it renews {when}.",
            reset,
        )
    if left.cost_left is not None and left.cost_left <= 0:
        raise BudgetExceeded(
            f"Your daily budget of ${left.cost_per_day} is spent (${left.cost_used:.4f} used); it renews {when}.",
            reset,
        )


def resolve_history(
    request: GenerationRequest, conversation: Conversation | None, model: ImageModel
) -> list[tuple[EarlierTurn, list[references.Resolved]]]:
    """The caller's earlier turns with their images verified (references), before anything is written."""
    if request.history and conversation is not None:
        raise InvalidRequest(
            request.references_field, "Earlier turns start a new conversation; send them without a conversation id."
        )
    resolved = []
    for index, turn in enumerate(request.history):
        name = f"{request.references_field}[{index}]"
        if turn.role not in ("user", "model"):
            raise InvalidRequest(name, f"{name} has the role '{turn.role}'; a turn is the user's or the model's.")
        images = [image for image, _ in turn.images]
        inputs = references.resolve(images, user=request.user, model=model, name=name, base_url=request.base_url)
        resolved.append((turn, inputs))
    return resolved


class QueueFull(InvalidRequest):
    """The user has as many jobs waiting or running as they may (429 until one finishes)."""

    code = "queue_full"

    def __init__(self, message: str, seconds: int):
        super().__init__("queue", message, 429)
        self.seconds = seconds

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.seconds)}


def check_room(user_id: int, priority: int) -> None:
    """Raise QueueFull when the user may queue no more: NANOCLONE_MAX_JOBS_PER_USER jobs waiting or
    running (their own limit in admin, Queue limits), batch work aside."""
    if priority == Job.Priority.BATCH:
        return
    limit = QueueLimit.objects.filter(user_id=user_id).values_list("jobs", flat=True).first()
    limit = settings.MAX_JOBS_PER_USER if limit is None else limit
    queued = Job.objects.filter(user_id=user_id, state__in=(Job.State.PENDING, Job.State.RUNNING))
    if queued.exclude(priority=Job.Priority.BATCH).count() < limit:
        return
    seconds = _seconds_until_room(user_id)
    raise QueueFull(
        f"You have {limit} jobs waiting or running, as many as you may at once; "
        f"the next one finishes in about {seconds} s.",
        seconds,
    )


def _seconds_until_room(user_id: int) -> int:
    """About when the user's oldest running job finishes: the recent jobs' median run, less what it
    has run already (at least 1 s)."""
    recent = Job.objects.filter(state=Job.State.SUCCEEDED, started_at__isnull=False).order_by("-finished_at")[:50]
    runs = sorted(
        (job.finished_at - job.started_at).total_seconds() for job in recent if job.finished_at and job.started_at
    )
    typical = runs[len(runs) // 2] if runs else 30.0
    oldest = Job.objects.filter(user_id=user_id, state=Job.State.RUNNING).aggregate(at=Min("started_at"))["at"]
    ran = (timezone.now() - oldest).total_seconds() if oldest else 0.0
    return max(1, math.ceil(typical - ran))
