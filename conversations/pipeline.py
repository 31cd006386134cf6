"""The one generation pipeline every door (pages, native API, dialects, jobs, MCP) goes through.

start() is the doors' one call: it validates and records the turn and the job before any network
call (submit), then runs the job the way the door needs (RunMode). run() claims the job, calls
Gemini through the key pool with the conversation's history, stores the images and finishes the
job. run() takes an id and is safe to run twice.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, OperationalError, close_old_connections, connections, transaction
from django.db.models import Count, F, Min, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from conversations import references, safe_fetch
from conversations.background import enqueue_on_commit, release_connection
from conversations.errors import BudgetExceeded, InvalidRequest
from conversations.models import Conversation, Job, Message
from conversations.signals import job_finished, job_progress
from gallery import renditions, storage, transform
from gallery.models import Image
from keys import budgets, pool
from keys.gemini import client as gemini
from keys.gemini.catalogue import ImageModel, known_names, resolve_model

log = logging.getLogger(__name__)


MAX_IMAGES_PER_JOB = 4
THREAD_ATTEMPTS = 5
# Door options that differ on every attempt of the same request (AceData's trace id).
PER_ATTEMPT_OPTIONS = frozenset({"trace_id"})
MAX_RESTS_WAITED = 3  # per image and key: 429s after which the key is given up for this request
# Job option of a turn run again (the chat's Regenerate and Retry): the id of the first turn, whose
# history the new job gets, so Gemini makes new images for the prompt instead of editing that turn's.
REGENERATES = "regenerates"
# Job option of a door that shows each image as soon as it is stored (the chat): its display
# rendition is made while storing, so the page never waits for it to be made on first view.
DISPLAY_RENDITION = "display_rendition"


class RunMode(enum.Enum):
    INLINE = "inline"  # run now and return the finished job (synchronous doors)
    QUEUE = "queue"  # async API doors: refused at once when no key could serve, else on the cluster
    BACKGROUND = "background"  # the chat: always recorded (a failure shows in the thread), run per CHAT_EXECUTION


class GenerationFailed(Exception):
    def __init__(self, code: Job.ErrorCode, message: str, retry_after: dt.datetime | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


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
    options: dict[str, Any] = field(default_factory=dict)
    callback_url: str = ""
    # Where the caller reached us: recognises absolute links to our own files, and builds the
    # absolute URLs of callbacks and webhooks later, outside the request (options["base_url"]).
    base_url: str = ""


# --- validation ---------------------------------------------------------------------------


def _validate_model(request: GenerationRequest, conversation: Conversation | None) -> tuple[ImageModel, str, str, str]:
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


def _validate_prompt(prompt: str) -> str:
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


def _validate_callback(url: str) -> str:
    """A caller's callback URL, checked now so a bad one is refused at once (https, public, <= 2048)."""
    if not url:
        return ""
    try:
        return safe_fetch.check_callback_url(url)
    except (safe_fetch.UnsafeURLError, safe_fetch.FetchError) as error:
        raise InvalidRequest("callback_url", str(error)) from error


def _conversation(request: GenerationRequest) -> Conversation | None:
    if not request.conversation_id:
        return None
    try:
        return Conversation.objects.get(pk=request.conversation_id, user=request.user)
    except (Conversation.DoesNotExist, ValueError, TypeError) as error:
        raise InvalidRequest(
            "conversationId", f"Conversation '{request.conversation_id}' was not found.", 404
        ) from error


# --- submit and start ----------------------------------------------------------------------


def submit(request: GenerationRequest, require_usable_key: bool = False) -> Job:
    """Validate and record the user turn and its job. Raises InvalidRequest (and with
    `require_usable_key`, pool.NoUsableKey when no key could serve it); writes nothing then."""
    return _record(request, require_usable_key).job


@dataclass
class _Recorded:
    """What _record() wrote, and what a run it claimed needs from what it had in hand."""

    job: Job
    lease: pool.Lease | None = None  # the first image's key, taken with the claim (None: none free now)
    # The whole history Gemini gets, when the job starts a conversation (None: history() reads it).
    turns: list[gemini.Turn] | None = None
    edited_from: uuid.UUID | None = None


def _record(request: GenerationRequest, require_usable_key: bool = False, claim: bool = False) -> _Recorded:
    """submit(); with `claim`, the job is recorded already claimed by the caller's run (attempt 1),
    and the first image's key taken, in the same transaction: one write before the network call."""
    prompt = _validate_prompt(request.prompt)
    conversation = _conversation(request)
    model, ratio, resolution, thinking = _validate_model(request, conversation)
    if not 1 <= request.num_images <= MAX_IMAGES_PER_JOB:
        raise InvalidRequest("num_images", f"num_images must be between 1 and {MAX_IMAGES_PER_JOB}.")
    callback_url = _validate_callback(request.callback_url)
    inputs = references.resolve(
        request.references,
        user=request.user,
        model=model,
        name=request.references_field,
        base_url=request.base_url,
    )
    earlier = _resolve_history(request, conversation, model)
    _check_budget(request)
    if require_usable_key and not claim:  # a claim finds out by taking the key
        pool.require_usable_key(model.id, settings.MAX_QUEUE_WAIT)
    options = {**request.options, "base_url": request.base_url} if request.base_url else request.options
    now = timezone.now()
    job_id = uuid.uuid4()
    starts_conversation = conversation is None
    with transaction.atomic():
        # First, so a refusal (NoUsableKey) leaves nothing behind, not even an uploaded file.
        lease = _first_lease(request, model, job_id, resolution, require_usable_key) if claim else None
        if conversation is None:
            conversation = Conversation.objects.create(user=request.user, title=prompt[:80], created_at=now)
        else:
            Conversation.objects.filter(pk=conversation.pk).update(updated_at=now)
        for offset, (turn, turn_inputs) in enumerate(earlier):
            # Just before the prompt, in their order: every listing of the conversation shows them first.
            brought = Message.objects.create(
                conversation=conversation,
                role=Message.Role.ASSISTANT if turn.role == "model" else Message.Role.USER,
                text=turn.text,
                thought_signature=turn.text_signature,
                model=model.id,
                created_at=now - dt.timedelta(microseconds=len(earlier) - offset),
            )
            _record_inputs(brought, turn_inputs, [signature for _, signature in turn.images])
        message = Message.objects.create(
            conversation=conversation, role=Message.Role.USER, text=prompt, model=model.id, created_at=now
        )
        images = _record_inputs(message, inputs)
        claimed = (
            {
                "state": Job.State.RUNNING,
                "phase": Job.Phase.GENERATING,
                "progress": _progress(request.num_images, 0),
                "attempts": 1,
                "lease_until": now + dt.timedelta(seconds=_lease_seconds()),
                "started_at": now,
            }
            if claim
            else {}
        )
        job = Job.objects.create(
            id=job_id,
            user=request.user,
            conversation=conversation,
            user_message=message,
            source=request.source,
            model=model.id,
            aspect_ratio=ratio,
            resolution=resolution,
            thinking_level=thinking,
            grounding=request.grounding,
            num_images=request.num_images,
            options=options,
            callback_url=callback_url,
            idempotency_key=request.idempotency_key,
            request_hash=_fingerprint(request) if request.idempotency_key else "",
            created_at=now,
            updated_at=now,
            **claimed,
        )
    if not starts_conversation or earlier:
        return _Recorded(job, lease)
    # The job starts a conversation: its history is this prompt alone, known without a read.
    prompt_turn, _ = _turn(message, images)
    return _Recorded(job, lease, [prompt_turn], images[-1].original_id if images else None)


def _first_lease(
    request: GenerationRequest, model: ImageModel, job_id: uuid.UUID, resolution: str, require_usable_key: bool
) -> pool.Lease | None:
    """The key for a claimed job's first image, or None when none is free now (the run then waits
    for a short rest, or fails the job); with `require_usable_key`, NoUsableKey unless one soon is."""
    caller = pool.Caller(request.user.pk, request.source, str(job_id), resolution)
    try:
        return pool.acquire(model.id, caller=caller)
    except pool.NoUsableKey:
        if require_usable_key:
            pool.require_usable_key(model.id, settings.MAX_QUEUE_WAIT)
        return None


def _check_budget(request: GenerationRequest) -> None:
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


def _resolve_history(
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


def _record_inputs(
    message: Message, inputs: list[references.Resolved], signatures: list[str] | None = None
) -> list[Image]:
    """The message's images, stored (or reused from the gallery) as its inputs, in order."""
    rows = []
    for index, reference in enumerate(inputs):
        if isinstance(reference, references.Upload):
            stored, prompt_of_source, original = storage.store(reference.data, reference.info), "", None
        else:
            stored, prompt_of_source = reference.stored, reference.prompt
            # Lineage: the gallery image this reference was taken from.
            original = reference.pk if reference.role == Image.Role.OUTPUT else reference.original_id
        row = Image.objects.create(
            **stored.fields,
            user_id=message.conversation.user_id,
            conversation=message.conversation,
            message=message,
            role=Image.Role.INPUT,
            index=index,
            prompt=prompt_of_source,
            thought_signature=signatures[index] if signatures else "",
            original_id=original,
        )
        rows.append(row)
    return rows


def start(
    request: GenerationRequest,
    mode: RunMode,
    on_progress: Callable[[Job], None] | None = None,
    require_usable_key: bool | None = None,
) -> Job:
    """The doors' one call: submit the request and run it as `mode` says. Raises InvalidRequest.

    INLINE returns the finished job; `on_progress` then hears each of its progress steps.
    `require_usable_key` (the default for QUEUE) refuses the request with pool.NoUsableKey when no
    key could serve it, recording nothing, rather than recording a job only to fail it.
    """
    if require_usable_key is None:
        require_usable_key = mode is RunMode.QUEUE
    inline = mode is RunMode.INLINE
    # A replay must not fetch or store its references again, so a request with some looks first;
    # one without is told apart by one_job_per_key when its job is inserted, at no extra read.
    if (request.references or request.history) and (first := _replayed(request)) is not None:
        return _settled(first) if inline else first
    for _ in range(2):  # again once, when the key an earlier request used had expired
        try:
            recorded = _record(request, require_usable_key, claim=inline)
            break
        except IntegrityError:  # one_job_per_key: the job of this Idempotency-Key's first request is the answer
            if not request.idempotency_key:
                raise
            if (first := _replayed(request)) is not None:
                return _settled(first) if inline else first
    else:
        raise IntegrityError(f"Idempotency-Key {request.idempotency_key!r} stays taken.")
    job = recorded.job
    if inline:
        # Nobody else waits on this job: its progress is told to `on_progress`, not written.
        return _run(job, on_progress, watched=False, first=recorded)
    if mode is RunMode.BACKGROUND and settings.CHAT_EXECUTION == "thread":
        job_id = job.id
        transaction.on_commit(lambda: _start_thread(job_id))
    else:
        enqueue(job)
    return job


def _fingerprint(request: GenerationRequest) -> str:
    """What a request asks for, so a reused Idempotency-Key with another request is recognised."""
    digest = hashlib.sha256()
    fields = [
        request.source,
        request.prompt.strip(),
        request.model or "",
        request.aspect_ratio or "",
        request.resolution or "",
        request.thinking_level or "",
        request.grounding,
        str(request.conversation_id or ""),
        request.num_images,
        request.callback_url,
        {name: value for name, value in request.options.items() if name not in PER_ATTEMPT_OPTIONS},
        [(turn.role, turn.text, [image for image, _ in turn.images]) for turn in request.history],
        request.references,
    ]
    digest.update(json.dumps(fields, sort_keys=True, default=_hashable).encode())
    return digest.hexdigest()


def _hashable(value: Any) -> str:
    return hashlib.sha256(value).hexdigest() if isinstance(value, bytes) else str(value)


def _replayed(request: GenerationRequest) -> Job | None:
    """The job an earlier request with the same Idempotency-Key made, or None. Raises InvalidRequest (409)."""
    if not request.idempotency_key:
        return None
    job = Job.objects.filter(user=request.user, idempotency_key=request.idempotency_key).first()
    if job is None:
        return None
    if job.created_at < timezone.now() - dt.timedelta(hours=settings.IDEMPOTENCY_HOURS):
        Job.objects.filter(pk=job.pk).update(idempotency_key="")  # expired: the key is free again
        return None
    if job.request_hash != _fingerprint(request):
        raise InvalidRequest(
            "Idempotency-Key",
            f"This Idempotency-Key was used {timezone.now() - job.created_at} ago for a different request; "
            "send a new key for a new request.",
            409,
        )
    return job


def _settled(job: Job) -> Job:
    """A replayed synchronous request answers like the first: once its job has finished."""
    deadline = time.monotonic() + int(settings.Q_CLUSTER["timeout"])  # type: ignore[call-overload]
    while not job.finished and time.monotonic() < deadline:
        time.sleep(0.2)
        job.refresh_from_db()
    return job


JOB_THREAD_PREFIX = "job-"  # how tests find the job threads still running


def _start_thread(job_id: uuid.UUID) -> None:
    name = f"{JOB_THREAD_PREFIX}{job_id}"
    threading.Thread(target=_run_in_thread, args=(job_id,), name=name, daemon=True).start()


def _run_in_thread(job_id: uuid.UUID) -> None:
    close_old_connections()
    try:
        for attempt in range(1, THREAD_ATTEMPTS + 1):
            try:
                run(job_id)
                return
            except OperationalError as error:
                # The database was busy (an SQLite lock): run() claims atomically and is safe to
                # repeat, as the queue's redelivery would.
                log.warning("Job %s: database busy (%s), try %d of %d", job_id, error, attempt, THREAD_ATTEMPTS)
                time.sleep(0.2 * attempt)
                _let_go(job_id)
        log.error("Job %s could not start: the database stayed busy", job_id)
    finally:
        # This thread's connection would otherwise stay open until the process ends.
        connections.close_all()


def _let_go(job_id: uuid.UUID) -> None:
    """End the lease of a job whose run on this thread stopped at a database error: had the run
    claimed it, the next try could not (a live lease means another worker has it), and the job
    would stay running until a cluster's sweep. Any write the run made after its claim checks the
    lease, so a run elsewhere is never undone by this."""
    with suppress(OperationalError):  # still busy: the next try finds the job as it is
        Job.objects.filter(pk=job_id, state=Job.State.RUNNING).update(lease_until=timezone.now())


def enqueue(job: Job) -> None:
    """Run the job on the django-q2 cluster once the surrounding transaction commits."""
    enqueue_on_commit("conversations.tasks.run_job", str(job.id), task_name=f"job-{job.id}")


@dataclass(frozen=True)
class QueueNow:
    pending: int  # jobs waiting to start
    oldest_pending_at: dt.datetime | None  # when the longest-waiting of them arrived
    running: int  # jobs being generated


def queue_now() -> QueueNow:
    """The queue as it is now, whichever process asks (/metrics reads it at scrape time)."""
    pending = Job.objects.filter(state=Job.State.PENDING).aggregate(n=Count("id"), oldest=Min("created_at"))
    running = Job.objects.filter(state=Job.State.RUNNING).count()
    return QueueNow(pending["n"], pending["oldest"], running)


def recover_stale_jobs() -> str:
    """Requeue jobs whose worker died (lease expired) or whose task never ran; give up after
    max_attempts runs. django-q2 does not hand out again a task it killed for its timeout,
    and a web process running a job inline can die too, so this sweep is what finishes them."""
    now = timezone.now()
    max_attempts = int(settings.Q_CLUSTER["max_attempts"])  # type: ignore[call-overload]
    forgotten = now - dt.timedelta(seconds=int(settings.Q_CLUSTER["retry"]))  # type: ignore[call-overload]
    stale = Job.objects.filter(
        Q(state=Job.State.RUNNING, lease_until__lt=now) | Q(state=Job.State.PENDING, created_at__lt=forgotten)
    )
    requeued = abandoned = 0
    for job in stale.select_related("conversation", "user_message", "user"):
        if job.state == Job.State.RUNNING and job.attempts >= max_attempts:
            # Take the lease first so a worker that re-claims it meanwhile isn't overridden.
            if Job.objects.filter(pk=job.pk, state=Job.State.RUNNING, lease_until__lt=now).update(
                lease_until=now + dt.timedelta(seconds=_lease_seconds())
            ):
                _fail(
                    job, Job.ErrorCode.INTERNAL, f"The worker running this job stopped {job.attempts} times; gave up."
                )
                abandoned += 1
            continue
        enqueue(job)
        requeued += 1
    summary = f"Stale jobs: {requeued} requeued, {abandoned} given up."
    if requeued or abandoned:
        log.warning(summary)
    return summary


def cancel(job: Job, running: bool = False) -> bool:
    """Cancel a job that has not started (with `running`, one that has not finished); True when it
    was cancelled. A run in progress notices at its next write (its lease is gone) and stops; the
    images it stored go, as a failed job's do."""
    now = timezone.now()
    states = [Job.State.PENDING, Job.State.RUNNING] if running else [Job.State.PENDING]
    with transaction.atomic():
        cancelled = Job.objects.filter(pk=job.pk, state__in=states).update(
            state=Job.State.CANCELLED,
            phase=Job.Phase.DONE,
            error_code=Job.ErrorCode.CANCELLED,
            error="Cancelled before it started." if job.state == Job.State.PENDING else "Cancelled while generating.",
            updated_at=now,
            finished_at=now,
            lease_until=None,
        )
        if cancelled:
            Image.objects.filter(job=job, role=Image.Role.OUTPUT).delete_with_files()
    if cancelled:
        job.refresh_from_db()
        _notify(job_finished, job)
    return bool(cancelled)


# --- run ---------------------------------------------------------------------------------------


def _lease_seconds() -> int:
    # Shorter than django-q2's retry (settings checks it), so a redelivered task finds a dead run's
    # lease expired; short, so the sweep takes over a dead run's job within a minute or two.
    return int(settings.JOB_LEASE_SECONDS)


class _LeaseLost(Exception):
    """Another run holds the job now: this one stalled past its lease and stops, writing nothing more."""


def _hold(job: Job, **changes: Any) -> None:
    """Renew this run's lease, with `changes`; raises _LeaseLost when the job is no longer this run's.

    The run is identified by its claim (`attempts`), so a run that stalled past its lease and was
    taken over can't overwrite the run that took over, nor store its images twice.
    """
    now = timezone.now()
    lease_until = now + dt.timedelta(seconds=_lease_seconds())
    held = Job.objects.filter(pk=job.pk, state=Job.State.RUNNING, attempts=job.attempts).update(
        lease_until=lease_until, **changes
    )
    if not held:
        raise _LeaseLost(f"Job {job.pk}: another run took over (attempt {job.attempts} lost its lease).")
    job.lease_until = lease_until
    for name, value in changes.items():
        setattr(job, name, value)


def _keep(job: Job) -> None:
    """Renew the lease once a third of it has gone by (the heartbeat's beat)."""
    lease_until = job.lease_until
    if lease_until is not None and timezone.now() >= lease_until - dt.timedelta(seconds=_lease_seconds() * 2 / 3):
        _hold(job)


class _Heartbeat:
    """One thread per process renews the lease of every run in progress there, whatever the run is
    doing (calling Gemini on its own thread, waiting for a key, backing off): no run needs a thread
    of its own to keep its job. A run whose lease was lost finds out at its next write."""

    def __init__(self) -> None:
        self._runs: dict[uuid.UUID, Job] = {}
        self._lock = threading.Lock()
        self._joined = threading.Event()  # a run with a shorter lease came in: beat on its terms now
        self._period = 0.0  # how long the beat waits now
        self._thread: threading.Thread | None = None

    @contextmanager
    def holding(self, job: Job) -> Iterator[None]:
        with self._lock:
            self._runs[job.pk] = job
            if self._thread is None or not self._thread.is_alive():  # also in a forked worker
                self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)
                self._thread.start()
        if _lease_seconds() / 6 < self._period:  # (tests change the lease; a server doesn't)
            self._joined.set()
        try:
            yield
        finally:
            with self._lock:
                self._runs.pop(job.pk, None)

    def _beat(self) -> None:
        while True:
            self._period = _lease_seconds() / 6  # renewed within a sixth of a lease of its third
            self._joined.wait(timeout=self._period)
            self._joined.clear()
            with self._lock:
                runs = list(self._runs.values())
            for job in runs:
                try:
                    _keep(job)
                except _LeaseLost:
                    with self._lock:
                        self._runs.pop(job.pk, None)
                except Exception:  # a busy database...: the next beat tries again; the heartbeat never dies
                    log.warning("Could not renew the lease of job %s", job.pk, exc_info=True)
            if runs:  # no connection held between beats (a test database can then be dropped)
                connections.close_all()


_HEARTBEAT = _Heartbeat()


def run(job_id: uuid.UUID | str, on_progress: Callable[[Job], None] | None = None) -> Job | None:
    """Claim and run a job. Returns the job, or None when it no longer exists.

    Every progress step is written and sent as the job_progress signal (the chat and webhooks
    listen, pollers read it), and told to `on_progress`.
    """
    now = timezone.now()
    claimed = (
        Job.objects.filter(pk=job_id)
        .filter(Q(state=Job.State.PENDING) | Q(state=Job.State.RUNNING, lease_until__lt=now))
        .update(
            state=Job.State.RUNNING,
            phase=Job.Phase.INITIALIZING,
            progress=5,
            attempts=F("attempts") + 1,
            lease_until=now + dt.timedelta(seconds=_lease_seconds()),
            started_at=Coalesce(F("started_at"), now),
            updated_at=now,
        )
    )
    job = Job.objects.select_related("conversation", "user_message", "user").filter(pk=job_id).first()
    if job is None or not claimed:
        return job  # gone, finished, or another worker holds it
    return _run(job, on_progress, watched=True)


def _run(job: Job, on_progress: Callable[[Job], None] | None, watched: bool, first: _Recorded | None = None) -> Job:
    """Run a job this run has claimed. `watched`: others may follow it (a queued job's pollers,
    the chat, webhooks), so each step is written and signalled; else only `on_progress` hears it
    (it also hears the end). `first`: what _record() had in hand when it claimed the job (its first
    key, its history)."""

    def move(**changes: Any) -> None:
        if watched:
            _hold(job, updated_at=timezone.now(), **changes)
        else:
            for name, value in changes.items():
                setattr(job, name, value)
        progressed()

    def progressed() -> None:
        if watched:
            _notify(job_progress, job)
        if on_progress is not None:
            on_progress(job)

    progressed()
    with _HEARTBEAT.holding(job):
        job = _attempt(job, move, first)
    if on_progress is not None:  # the last step: how it ended
        on_progress(job)
    return job


def _attempt(job: Job, move: Callable[..., None], first: _Recorded | None) -> Job:
    """Generate, then record the outcome: the job as it ended (or as the run that took it over left it)."""
    try:
        return _succeed(job, _generate_all(job, move, first), move)
    except _LeaseLost as lost:
        job.refresh_from_db()
        if job.state == Job.State.CANCELLED:
            log.info("Job %s was cancelled; this run stops.", job.pk)
        else:
            log.warning("%s This run stops.", lost)
        return job
    except GenerationFailed as failure:
        return _fail(job, failure.code, failure.message, failure.retry_after)
    except Exception:
        log.exception("Job %s failed unexpectedly", job.pk)
        return _fail(
            job, Job.ErrorCode.INTERNAL, "NanoClone hit an internal error while generating; it has been logged."
        )


@dataclass
class _Tries:
    dead: set[int] = field(default_factory=set)  # invalid keys: never again
    rested: int = 0  # 429s: the rest keeps the key out until it ends; waiting for it is bounded
    flaky: set[int] = field(default_factory=set)  # keys that just had a transient error
    transient: int = 0


def _acquire(job: Job, tries: _Tries, move: Callable[..., None]) -> pool.Lease:
    """The next key for this image; when every key rests for only a short while, wait for the first."""
    deadline = time.monotonic() + settings.MAX_QUEUE_WAIT
    while True:
        try:
            caller = pool.Caller(job.user_id, job.source, str(job.id), job.resolution)
            return pool.acquire(job.model, exclude=tries.dead | tries.flaky, caller=caller)
        except pool.NoUsableKey as none:
            if tries.flaky:  # every other key is gone: retrying a flaky one beats failing
                tries.flaky.clear()
                continue
            wait_for = (none.retry_after - timezone.now()).total_seconds() if none.retry_after else None
            if wait_for is None or time.monotonic() + wait_for > deadline:
                raise GenerationFailed(Job.ErrorCode.NO_USABLE_KEY, none.message, none.retry_after) from none
            why = none.message
        if job.phase != Job.Phase.WAITING:
            move(phase=Job.Phase.WAITING)
        log.info("Job %s waits %.1f s for a key to rest out (%s)", job.pk, wait_for, why)
        release_connection()
        time.sleep(max(0.05, wait_for) + random.uniform(0, 0.2))  # jitter: waiters don't all wake at once


@dataclass
class _Generated:
    """What _generate_all() made: every answer by image index, the images stored so far, and the
    answer still to store (the job's last image: stored with its success, in one transaction)."""

    answers: dict[int, gemini.GeminiAnswer]
    outputs: dict[int, Image]
    last: tuple[int, gemini.GeminiAnswer, pool.Lease] | None
    edited_from: uuid.UUID | None


def _generate_all(job: Job, move: Callable[..., None], first: _Recorded | None) -> _Generated:
    """Generate every image of the job not stored yet, concurrently, each through the pool.

    Several images are called for at once, on a thread each; one image on this thread. Every
    database write stays on this thread.
    """
    if first is not None and first.turns is not None:
        turns, edited_from = first.turns, first.edited_from
    else:
        turns, edited_from = _history(job)
    # Only a run holding the claim stores outputs, so a first claim (attempt 1) finds none.
    outputs = (
        {image.index: image for image in Image.objects.filter(job=job, role=Image.Role.OUTPUT)}
        if job.attempts > 1
        else {}
    )
    made = _Generated({}, outputs, None, edited_from)
    todo = [index for index in range(job.num_images) if index not in outputs]
    if job.phase != Job.Phase.GENERATING:
        move(phase=Job.Phase.GENERATING, progress=_progress(job.num_images, len(outputs)))
    tries = {index: _Tries() for index in todo}
    leased = first.lease if first is not None else None  # taken with the claim, for the first call
    executor = ThreadPoolExecutor(max_workers=len(todo), thread_name_prefix="gemini") if len(todo) > 1 else None
    try:
        running: dict[Future[gemini.GeminiAnswer], tuple[int, pool.Lease]] = {}

        def call_gemini(index: int) -> None:
            nonlocal leased
            lease, leased = leased or _acquire(job, tries[index], move), None
            if job.phase != Job.Phase.GENERATING:
                move(phase=Job.Phase.GENERATING)
            call = (executor.submit if executor else _called)(gemini.generate, lease, job.model, turns, _options(job))
            running[call] = (index, lease)

        for index in todo:
            call_gemini(index)
        while running:
            release_connection()  # while the images' threads wait on Gemini
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for call in done:
                index, lease = running.pop(call)
                try:
                    answer = call.result()
                except pool.GeminiError as error:
                    pool.report(lease, error)
                    failure = error  # `error` is unbound after the except block
                else:
                    made.answers[index] = answer
                    if len(outputs) + 1 == job.num_images:  # the last one is stored with the job's success
                        made.last = (index, answer, lease)
                        continue
                    outputs[index] = _store_output(job, index, answer, pool.report(lease, None, answer.usage), made)
                    move(progress=_progress(job.num_images, len(outputs)))
                    continue
                # What the failure means for this request (the key's side was reported above).
                if isinstance(failure, pool.KeyRejected):
                    tries[index].dead.add(lease.key_id)
                elif isinstance(failure, pool.KeyExhausted):
                    tries[index].rested += 1
                    if tries[index].rested > MAX_RESTS_WAITED:  # a quota that keeps answering 429 at once
                        tries[index].dead.add(lease.key_id)
                elif isinstance(failure, pool.UpstreamUnavailable):
                    tries[index].flaky.add(lease.key_id)
                    tries[index].transient += 1
                    if tries[index].transient > settings.UPSTREAM_RETRIES:
                        raise GenerationFailed(
                            Job.ErrorCode.UPSTREAM_ERROR,
                            f"Gemini is not answering properly right now ({failure}). Try again later.",
                        ) from failure
                    backoff = settings.UPSTREAM_BACKOFF_SECONDS * 2 ** (tries[index].transient - 1)
                    release_connection()
                    time.sleep(backoff * random.uniform(0.8, 1.2))
                elif isinstance(failure, pool.Refused):
                    raise GenerationFailed(Job.ErrorCode(failure.code), failure.message) from failure
                else:
                    raise GenerationFailed(
                        Job.ErrorCode.REQUEST_REJECTED, f"Gemini rejected the request: {failure}"
                    ) from failure
                call_gemini(index)  # a key-level failure: the same image on the next key
    finally:
        # A failure doesn't wait for the other images' calls; their answers are dropped.
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
    return made


def _called(function: Callable[..., gemini.GeminiAnswer], *args: Any) -> Future[gemini.GeminiAnswer]:
    """function(*args) called now, on this thread, as the finished Future an executor would give."""
    release_connection()  # this thread now waits on Gemini, seconds
    future: Future[gemini.GeminiAnswer] = Future()
    try:
        future.set_result(function(*args))
    except Exception as error:  # what result() raises, as from a thread
        future.set_exception(error)
    return future


def _options(job: Job) -> gemini.Options:
    return gemini.Options(job.aspect_ratio, job.resolution, job.thinking_level, job.grounding)


def _progress(num_images: int, images_done: int) -> int:
    return 10 + (80 * images_done) // num_images


def _stored_file(job: Job, answer: gemini.GeminiAnswer) -> tuple[storage.StoredImage, str | None]:
    """The answer's image stored as its file, with Gemini's own base64 of it when the bytes are
    those Gemini sent (the answer reuses it) or None when a door asked for another format or size."""
    # Gemini may return several image parts; the first is the image for this slot.
    image = answer.images[0]
    data = image.data
    # Doors that promise a pixel size or format Gemini doesn't produce ask for it here.
    if output := job.options.get("output"):
        size = (output["width"], output["height"]) if output.get("width") and output.get("height") else None
        data = transform.convert(data, output.get("format"), size)
    stored = storage.store(data)  # content-addressed: a file stored twice is one file
    if job.options.get(DISPLAY_RENDITION):
        renditions.ensure_display(stored.file)
    return stored, image.base64 if data is image.data else None


def _output_row(
    job: Job,
    index: int,
    answer: gemini.GeminiAnswer,
    stored: tuple[storage.StoredImage, str | None],
    cost: Decimal,
    edited_from: uuid.UUID | None,
    message: Message | None = None,
) -> Image:
    file, encoded = stored
    row = Image.objects.create(
        **file.fields,
        user=job.user,
        conversation=job.conversation,
        message=message,
        job=job,
        role=Image.Role.OUTPUT,
        index=index,
        prompt=job.user_message.text,
        model=job.model,
        thought_signature=answer.images[0].thought_signature,
        edited_from_id=edited_from,
        cost=cost,
    )
    row.encoded = encoded
    return row


def _store_output(job: Job, index: int, answer: gemini.GeminiAnswer, cost: Decimal, made: _Generated) -> Image:
    """One image of several, stored as soon as it is made (its progress shows)."""
    stored = _stored_file(job, answer)
    try:
        with transaction.atomic():
            _hold(job)  # still this run's, so a run that was taken over doesn't store the image twice
            return _output_row(job, index, answer, stored, cost, made.edited_from)
    except _LeaseLost:  # cancelled or taken over meanwhile: no file without its row
        Image.delete_unreferenced_files(stored[0].file, stored[0].thumbnail)
        raise


def _succeed(job: Job, made: _Generated, move: Callable[..., None]) -> Job:
    """Record the answer and finish the job, the last image with them: one transaction."""
    move(phase=Job.Phase.SAVING, progress=95)
    answers, outputs = made.answers, made.outputs
    first = answers[min(answers)] if answers else None
    stored = _stored_file(job, made.last[1]) if made.last else None
    now = timezone.now()

    def total(attribute: str) -> int | None:
        values = [getattr(a, attribute) for a in answers.values() if getattr(a, attribute) is not None]
        return sum(values) if values else None

    finished = committed = False
    try:
        with transaction.atomic():
            message = Message.objects.create(
                conversation=job.conversation,
                role=Message.Role.ASSISTANT,
                text=first.text if first else "",
                thought_signature=first.text_signature if first else "",
                model=job.model,
                prompt_tokens=total("prompt_tokens"),
                output_tokens=total("output_tokens"),
                total_tokens=total("total_tokens"),
                grounding=first.grounding if first else None,
                created_at=now,
            )
            done = {
                "state": Job.State.SUCCEEDED,
                "phase": Job.Phase.DONE,
                "progress": 100,
                "assistant_message": message,
                "updated_at": now,
                "finished_at": now,
                "lease_until": None,
            }
            # Still this run's? Else another run took over meanwhile, and its outcome stands.
            finished = bool(
                Job.objects.filter(pk=job.pk, state=Job.State.RUNNING, attempts=job.attempts).update(**done)
            )
            if not finished:
                transaction.set_rollback(True)
            else:
                if outputs:  # stored one by one before: theirs is this answer too
                    Image.objects.filter(job=job, role=Image.Role.OUTPUT).update(message=message)
                if made.last is not None and stored is not None:
                    index, answer, lease = made.last
                    cost = pool.report(lease, None, answer.usage)  # its ledger row goes with its image
                    outputs[index] = _output_row(job, index, answer, stored, cost, made.edited_from, message)
        committed = True
    finally:
        if made.last is not None and stored is not None and not (committed and finished):
            pool.report(made.last[2], None, made.last[1].usage)  # the call happened: its ledger row stands
            Image.delete_unreferenced_files(stored[0].file, stored[0].thumbnail)
    if not finished:
        job.refresh_from_db()  # the other run's outcome
        return job
    for name, value in done.items():  # what the UPDATE wrote, without reading the row back
        setattr(job, name, value)
    images = [outputs[index] for index in sorted(outputs)]
    for image in images:
        image.message = message
    job.outputs = images  # type: ignore[attr-defined]  # output_images() reads it, as chat's to_attr
    _notify(job_finished, job)
    return job


def _fail(job: Job, code: Job.ErrorCode, message: str, retry_after: dt.datetime | None = None) -> Job:
    now = timezone.now()
    with transaction.atomic():
        # Nothing half-saved: images of a failed job go (their files too, unless this rolls back).
        Image.objects.filter(job=job, role=Image.Role.OUTPUT).delete_with_files()
        answer = Message.objects.create(
            conversation=job.conversation,
            role=Message.Role.ASSISTANT,
            model=job.model,
            status=Message.Status.FAILED,
            error=message,
            created_at=now,
        )
        failed = Job.objects.filter(pk=job.pk, state=Job.State.RUNNING, attempts=job.attempts).update(
            state=Job.State.FAILED,
            phase=Job.Phase.DONE,
            error_code=code,
            error=message,
            retry_after=retry_after,
            assistant_message=answer,
            updated_at=now,
            finished_at=now,
            lease_until=None,
        )
        if not failed:  # another run took over meanwhile (or it finished): its outcome stands
            transaction.set_rollback(True)
    job.refresh_from_db()
    if not failed:
        return job
    log.info("Job %s failed (%s): %s", job.pk, code, message)
    _notify(job_finished, job)
    return job


def output_images(job: Job) -> list[Image]:
    """A job's output images in order: those its run left in hand (with Gemini's base64), else read."""
    in_hand: list[Image] | None = getattr(job, "outputs", None)
    if in_hand is not None:
        return in_hand
    return list(Image.objects.filter(job=job, role=Image.Role.OUTPUT).order_by("index"))


def _notify(signal: Any, job: Job) -> None:
    for receiver, result in signal.send_robust(sender=Job, job=job):
        if isinstance(result, Exception):
            log.error("Receiver %s failed for job %s: %s", receiver, job.pk, result, exc_info=result)


# --- history -----------------------------------------------------------------------------------


def history(job: Job) -> list[gemini.Turn]:
    """The conversation so far as Gemini turns, then this job's prompt: first the turns the caller
    brought along (EarlierTurn: the messages no job asked or answered), then the successful turns."""
    return _history(job)[0]


def _history(job: Job) -> tuple[list[gemini.Turn], uuid.UUID | None]:
    """history(), and the image the job's outputs edit as Gemini sees it, from the same reads: the
    job's last reference when it has some (the gallery image that was; None for an upload), else
    the last image of the latest earlier turn that has images."""
    brought = Message.objects.filter(
        conversation=job.conversation,
        job__isnull=True,
        answer_to__isnull=True,
        status=Message.Status.COMPLETED,
        created_at__lt=job.user_message.created_at,
    ).order_by("created_at")
    turns = [_turn(message)[0] for message in brought]
    edited_from = None
    earlier = _earlier_turns(job).select_related("user_message", "assistant_message")
    for past in reversed(list(earlier)):
        turns.append(_turn(past.user_message)[0])
        if past.assistant_message:
            reply = past.assistant_message
            outputs = list(reply.images.filter(role=Image.Role.OUTPUT).order_by("index"))
            images = [(storage.read(image.file), image.mime_type, image.thought_signature) for image in outputs]
            turns.append(gemini.Turn("model", reply.text, reply.thought_signature, images))
            edited_from = outputs[-1].pk if outputs else edited_from  # oldest first: the latest wins
    prompt, inputs = _turn(job.user_message)
    turns.append(prompt)
    return turns, (inputs[-1].original_id if inputs else edited_from)


def edited_next(conversation_id: uuid.UUID) -> Image | None:
    """The image the conversation's next prompt edits when it brings no reference: the last image
    of its latest successful turn (a turn still being made is not in the history yet)."""
    return _latest_images(_succeeded_turns(conversation_id)).first()


def _earlier_turns(job: Job) -> QuerySet[Job]:
    """The successful turns history() gives Gemini before this job's prompt, newest first: those
    before this turn or, for a turn run again, those before the turn it runs again."""
    before = job.created_at
    if first := job.options.get(REGENERATES):  # a turn run again gets that turn's history
        turn_of = Job.objects.filter(pk=first, conversation=job.conversation_id)
        before = turn_of.values_list("created_at", flat=True).first() or before
    return _succeeded_turns(job.conversation_id, before)


def _succeeded_turns(conversation_id: uuid.UUID, before: dt.datetime | None = None) -> QuerySet[Job]:
    """A conversation's latest successful turns (before `before`), newest first, as many as history() sends."""
    succeeded = Job.objects.filter(conversation=conversation_id, state=Job.State.SUCCEEDED)
    if before is not None:
        succeeded = succeeded.filter(created_at__lt=before)
    return succeeded.order_by("-created_at")[: settings.HISTORY_TURNS]


def _latest_images(turns: QuerySet[Job]) -> QuerySet[Image]:
    """The output images of these turns, latest first: the first is the one Gemini edits when they
    are its history (the last image of the latest turn that has images)."""
    images = Image.objects.filter(job__in=turns.values("pk"), role=Image.Role.OUTPUT)
    return images.order_by("-job__created_at", "-index")


def _turn(message: Message, inputs: list[Image] | None = None) -> tuple[gemini.Turn, list[Image]]:
    """A user message, or a model turn the caller brought along, with its input images (and their
    rows: read unless the caller has them in hand, in order)."""
    if inputs is None:
        inputs = list(message.images.filter(role=Image.Role.INPUT).order_by("index"))
    images = [(storage.read(image.file), image.mime_type, image.thought_signature) for image in inputs]
    role = "model" if message.role == Message.Role.ASSISTANT else "user"
    return gemini.Turn(role, message.text, message.thought_signature, images), inputs
