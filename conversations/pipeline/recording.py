"""Recording a request before any network call: its user turn, its images and its job, in one
transaction (claimed at once for a synchronous door's run); and the Idempotency-Key that makes a
retried request get the first one's job instead of a second generation."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
import uuid
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from conversations import references
from conversations.errors import InvalidRequest
from conversations.models import Conversation, Job, Message
from conversations.pipeline.generating import Recorded
from conversations.pipeline.history import turn_of
from conversations.pipeline.leases import lease_seconds, progress_at
from conversations.pipeline.request import (
    GenerationRequest,
    check_budget,
    check_room,
    conversation_of,
    resolve_history,
    validate_callback,
    validate_model,
    validate_num_images,
    validate_prompt,
)
from gallery import storage
from gallery.models import Image
from keys import pool
from keys.catalogue import ImageModel
from keys.gemini import client as gemini

# Door options that differ on every attempt of the same request (AceData's trace id).
PER_ATTEMPT_OPTIONS = frozenset({"trace_id"})


def submit(request: GenerationRequest, require_usable_key: bool = False) -> Job:
    """Validate and record the user turn and its job. Raises InvalidRequest (and with
    `require_usable_key`, pool.NoUsableKey when no key could serve it); writes nothing then."""
    return record(request, require_usable_key).job


def record(request: GenerationRequest, require_usable_key: bool = False, claim: bool = False) -> Recorded:
    """submit(); with `claim`, the job is recorded already claimed by the caller's run (attempt 1),
    and the first image's key taken, in the same transaction: one write before the network call."""
    prompt = validate_prompt(request.prompt)
    conversation = conversation_of(request)
    model, ratio, resolution, thinking = validate_model(request, conversation)
    validate_num_images(request.num_images)
    callback_url = validate_callback(request.callback_url)
    inputs = references.resolve(
        request.references,
        user=request.user,
        model=model,
        name=request.references_field,
        base_url=request.base_url,
    )
    earlier = resolve_history(request, conversation, model)
    check_budget(request)
    priority = Job.Priority.BACKGROUND if request.priority is None else request.priority
    if not claim:  # a job that will wait in the queue: does the user have room in it?
        check_room(request.user.pk, priority)
    if require_usable_key and priority == Job.Priority.BATCH:
        pool.require_batch_key()
    elif require_usable_key and not claim:  # a claim finds out by taking the key
        pool.require_usable_key(model.id, settings.MAX_QUEUE_WAIT)
    options = {**request.options, "base_url": request.base_url} if request.base_url else request.options
    if request.batch_fallback:
        options = {**options, "batch_fallback": True}
    now = timezone.now()
    job_id = uuid.uuid4()
    starts_conversation = conversation is None
    with transaction.atomic():
        # First, so a refusal (NoUsableKey) leaves nothing behind, not even an uploaded file.
        lease = None
        if claim:
            # Its input tokens as far as known here: the prompt, its images and the turns it brings.
            text = prompt + "".join(turn.text for turn, _ in earlier)
            tokens = gemini.input_tokens([], text, len(inputs) + sum(len(turn.images) for turn, _ in earlier))
            lease = _first_lease(request, model, job_id, resolution, require_usable_key, tokens)
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
                "progress": progress_at(request.num_images, 0),
                "attempts": 1,
                "lease_until": now + dt.timedelta(seconds=lease_seconds()),
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
            priority=priority,
            options=options,
            callback_url=callback_url,
            idempotency_key=request.idempotency_key,
            request_hash=_fingerprint(request) if request.idempotency_key else "",
            created_at=now,
            updated_at=now,
            **claimed,
        )
    if not starts_conversation or earlier:
        return Recorded(job, lease)
    # The job starts a conversation: its history is this prompt alone, known without a read.
    prompt_turn, _ = turn_of(message, images)
    return Recorded(job, lease, [prompt_turn], images[-1].original_id if images else None)


def _first_lease(
    request: GenerationRequest,
    model: ImageModel,
    job_id: uuid.UUID,
    resolution: str,
    require_usable_key: bool,
    tokens: int,
) -> pool.Lease | None:
    """The key for a claimed job's first image, or None when none is free now (the run then waits
    for a short rest, or fails the job); with `require_usable_key`, NoUsableKey unless one soon is."""
    caller = pool.Caller(request.user.pk, request.source, str(job_id), resolution)
    try:
        return pool.acquire(model.id, caller=caller, tokens=tokens)
    except pool.NoUsableKey:
        if require_usable_key:
            pool.require_usable_key(model.id, settings.MAX_QUEUE_WAIT)
        return None


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


def replayed(request: GenerationRequest) -> Job | None:
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


def settled(job: Job) -> Job:
    """A replayed synchronous request answers like the first: once its job has finished."""
    deadline = time.monotonic() + int(settings.Q_CLUSTER["timeout"])  # type: ignore[call-overload]
    while not job.finished and time.monotonic() < deadline:
        time.sleep(0.2)
        job.refresh_from_db()
    return job
