"""Jobs at the Batch API's price: packed by model onto AI Studio keys as Gemini batch jobs, then
submitted, polled (backing off) and collected by the cluster; each job finishes as an online one does
(its images in the gallery, the job_finished signal for webhooks and callbacks), billed at the batch
tier in the ledger.

Every step is decided from the database, so it is safe to repeat and to die in the middle of:

- pack() moves waiting batch jobs into a new Batch (SUBMITTING) with one conditional UPDATE.
- submit() first asks Google for a batch whose display name is the Batch's id: a submitter that died
  after Google took the batch and before its name was stored left it there. Else it submits. The
  name is stored before anything waits on the batch.
- poll() asks Google; once the batch succeeded, each job still running gets its images and its ledger
  rows in one transaction with its success (results.succeed), or fails; a job already finished is
  left as it is, so a collection cut off and done again stores nothing twice.

A process takes a step of a batch only after pushing its next_look_at ahead (a conditional UPDATE),
so no two processes take the same step at once; a process that died mid-step leaves the batch to the
next process after NANOCLONE_BATCH_STEP_SECONDS.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import replace
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from conversations.models import Batch, Job
from conversations.pipeline.generating import options_for
from conversations.pipeline.history import edited_by, history_and_edited
from conversations.pipeline.leases import hold
from conversations.pipeline.queue import cancel as cancel_waiting
from conversations.pipeline.results import Generated, GenerationFailed, fail, notify, succeed
from conversations.signals import job_progress
from keys import pool
from keys.gemini import client as gemini
from keys.models import Price

log = logging.getLogger(__name__)

ACTIVE = (Batch.State.SUBMITTING, Batch.State.SUBMITTED)


def tick() -> str:
    """The cluster's batch work, run every NANOCLONE_BATCH_LOOK_SECONDS by each cluster process: pack
    what waits, then take each batch whose next look is due one step further."""
    packed = pack()
    stepped = 0
    due = Batch.objects.filter(state__in=ACTIVE, next_look_at__lte=timezone.now()).order_by("next_look_at")
    for batch_id in due.values_list("pk", flat=True)[:20]:
        if (batch := _take(batch_id)) is not None:
            submit(batch) if batch.state == Batch.State.SUBMITTING else poll(batch)
            stepped += 1
    return f"Batches: {packed} jobs packed, {stepped} batches looked at."


def _take(batch_id: uuid.UUID) -> Batch | None:
    now = timezone.now()
    ahead = now + dt.timedelta(seconds=settings.BATCH_STEP_SECONDS)
    if Batch.objects.filter(pk=batch_id, state__in=ACTIVE, next_look_at__lte=now).update(next_look_at=ahead):
        return Batch.objects.select_related("key").get(pk=batch_id)
    return None


def pack() -> int:
    """Put waiting batch jobs into batches, by model, up to NANOCLONE_BATCH_MAX_ITEMS requests each
    (one per image), once the oldest has waited NANOCLONE_BATCH_GATHER_SECONDS (so jobs sent one by
    one share a batch) or a batch is full; each on a key whose batch quota (input tokens enqueued)
    has room, a batch halved until it fits. The number of jobs packed."""
    waiting = Job.objects.filter(state=Job.State.PENDING, priority=Job.Priority.BATCH, batch__isnull=True)
    gathered = timezone.now() - dt.timedelta(seconds=settings.BATCH_GATHER_SECONDS)
    packed = 0
    for model in waiting.order_by().values_list("model", flat=True).distinct():
        jobs = list(
            waiting.filter(model=model)
            .annotate(inputs=Count("user_message__images"))
            .order_by("created_at")
            .values_list("pk", "num_images", "created_at", "user_message__text", "inputs")
        )
        if jobs[0][2] > gathered and sum(job[1] for job in jobs) < settings.BATCH_MAX_ITEMS:
            continue  # more may come to share the batch
        packed += _pack_model(model, jobs)
    return packed


_Waiting = tuple[uuid.UUID, int, dt.datetime, str, int]  # id, images, created, prompt, references


def _pack_model(model: str, jobs: list[_Waiting]) -> int:
    enqueued = dict(
        Batch.objects.filter(state__in=ACTIVE).values("key").annotate(n=Sum("tokens")).values_list("key", "n")
    )
    packed = 0
    while jobs:
        chosen: list[_Waiting] = []
        items = 0
        while jobs and (not chosen or items + jobs[0][1] <= settings.BATCH_MAX_ITEMS):
            chosen.append(jobs.pop(0))
            items += chosen[-1][1]
        while True:
            tokens = sum(images * gemini.input_tokens([], text, inputs) for _, images, _, text, inputs in chosen)
            try:
                lease = pool.acquire_batch(model, tokens, enqueued)
                break
            except pool.NoUsableKey as none:
                if none.message.startswith(pool.BATCH_FULL) and len(chosen) > 1:
                    half = (len(chosen) + 1) // 2  # half of it may fit
                    jobs[:0], chosen = chosen[half:], chosen[:half]
                    continue
                log.info("Batch jobs of %s wait: %s", model, none.message)  # a door refuses new ones
                return packed
        packed += _packed(model, lease.key_id, [job[0] for job in chosen], tokens)
        enqueued[lease.key_id] = enqueued.get(lease.key_id, 0) + tokens
    return packed


def _packed(model: str, key_id: int, job_ids: list[uuid.UUID], tokens: int) -> int:
    now = timezone.now()
    with transaction.atomic():
        batch = Batch.objects.create(model=model, key_id=key_id, tokens=tokens, next_look_at=now)
        claimed = Job.objects.filter(pk__in=job_ids, state=Job.State.PENDING, batch__isnull=True)
        count = claimed.update(
            batch=batch,
            state=Job.State.RUNNING,
            phase=Job.Phase.BATCHED,
            progress=10,
            attempts=F("attempts") + 1,
            lease_until=None,  # a batch job has no lease: the online queue and sweep leave it alone
            started_at=Coalesce(F("started_at"), now),
            updated_at=now,
        )
        if not count:  # another process packed them meanwhile
            transaction.set_rollback(True)
            return 0
        Batch.objects.filter(pk=batch.pk).update(items=batch.jobs.aggregate(n=Sum("num_images"))["n"])
    for job in Job.objects.filter(batch=batch):
        notify(job_progress, job)
    return count


def _running(batch: Batch) -> list[Job]:
    jobs = batch.jobs.filter(state=Job.State.RUNNING).select_related("conversation", "user_message", "user")
    return list(jobs.order_by("created_at"))


def _lease(batch: Batch) -> pool.Lease | None:
    return replace(pool.Lease.of(batch.key, batch.model), batch=True) if batch.key is not None else None


def submit(batch: Batch) -> None:
    """Send the batch to Google, unless Google has it already; store its name."""
    jobs = _running(batch)
    lease = _lease(batch)
    if not jobs or lease is None:
        _unpack(batch, jobs, "Every job of it was cancelled before it was sent." if not jobs else "Its key is gone.")
        return
    try:
        name = gemini.find_batch(lease, str(batch.pk))
        if name is None:
            items = []
            for job in jobs:
                turns, _ = history_and_edited(job)
                options = options_for(job)
                items += [gemini.BatchItem(f"{job.pk}:{slot}", turns, options) for slot in range(job.num_images)]
            name = gemini.submit_batch(lease, batch.model, items, display_name=str(batch.pk))
    except pool.GeminiError as error:
        pool.report(lease, error)  # a 429 rests this key's batch submission; a dead key is set aside
        if isinstance(error, pool.UpstreamUnavailable) and batch.polls < settings.UPSTREAM_RETRIES:
            Batch.objects.filter(pk=batch.pk).update(polls=F("polls") + 1, next_look_at=_next_look(batch.polls))
        else:  # back in line, for a batch on another key
            _unpack(batch, jobs, f"Gemini refused the batch: {error}")
        return
    now = timezone.now()
    Batch.objects.filter(pk=batch.pk).update(
        name=name, state=Batch.State.SUBMITTED, submitted_at=now, polls=0, next_look_at=_next_look(0)
    )
    log.info("Batch %s: %d jobs sent to Gemini as %s", batch.pk, len(jobs), name)


def _unpack(batch: Batch, jobs: list[Job], why: str) -> None:
    """The batch won't be sent: its jobs wait again, to be packed with the next."""
    with transaction.atomic():
        Job.objects.filter(pk__in=[job.pk for job in jobs], state=Job.State.RUNNING, batch=batch).update(
            state=Job.State.PENDING, phase=Job.Phase.QUEUED, progress=0, batch=None, updated_at=timezone.now()
        )
        Batch.objects.filter(pk=batch.pk).update(state=Batch.State.ENDED, error=why, finished_at=timezone.now())
    log.warning("Batch %s not sent: %s", batch.pk, why)


def _next_look(polls: int) -> dt.datetime:
    """Polls back off: every NANOCLONE_BATCH_POLL_SECONDS at first, half as often again each time, up
    to NANOCLONE_BATCH_POLL_MAX_SECONDS."""
    wait = min(settings.BATCH_POLL_MAX_SECONDS, settings.BATCH_POLL_SECONDS * 1.5**polls)
    return timezone.now() + dt.timedelta(seconds=wait)


def poll(batch: Batch) -> None:
    """Ask Google how the batch is; collect it once it ended."""
    lease = _lease(batch)
    if lease is None:
        _ended(batch, "BATCH_STATE_FAILED", "Its key was deleted, and only that key can read the batch.")
        return
    try:
        status = gemini.get_batch(lease, batch.name)
    except pool.GeminiError as error:
        pool.report(lease, error)
        if isinstance(error, pool.KeyRejected):
            _ended(batch, "BATCH_STATE_FAILED", f"Its key no longer works, and only that key can read it: {error}")
        else:
            Batch.objects.filter(pk=batch.pk).update(polls=F("polls") + 1, next_look_at=_next_look(batch.polls))
        return
    if not status.finished:
        Batch.objects.filter(pk=batch.pk).update(
            google_state=status.state, polls=F("polls") + 1, next_look_at=_next_look(batch.polls + 1)
        )
        return
    if status.state == gemini.BATCH_SUCCEEDED:
        _collect(batch, status, lease)
    else:
        _ended(batch, status.state, status.error)


def _collect(batch: Batch, status: gemini.BatchStatus, lease: pool.Lease) -> None:
    for job in _running(batch):
        billed = replace(
            lease, caller=pool.Caller(job.user_id, job.source, str(job.pk), job.resolution, tier=Price.Tier.BATCH)
        )
        results = [status.results.get(f"{job.pk}:{slot}") for slot in range(job.num_images)]
        answers = [result for result in results if isinstance(result, gemini.GeminiAnswer)]
        if len(answers) == len(results):
            unstored = [(slot, answer, billed) for slot, answer in enumerate(answers)]
            made = Generated(dict(enumerate(answers)), {}, unstored, edited_by(job))
            succeed(job, made, partial(_move, job))  # a job cancelled meanwhile stays cancelled
            continue
        failure = next((r for r in results if not isinstance(r, gemini.GeminiAnswer)), None)
        why = _failed(failure)
        with transaction.atomic():  # its ledger rows and its failure: once
            for result in results:
                if result is not None:
                    pool.report(
                        billed,
                        None if isinstance(result, gemini.GeminiAnswer) else result,
                        result.usage if isinstance(result, gemini.GeminiAnswer) else None,
                    )
            fail(job, why.code, why.message, refusal=why.refusal)
    Batch.objects.filter(pk=batch.pk).update(
        state=Batch.State.COLLECTED, google_state=status.state, finished_at=timezone.now()
    )
    log.info("Batch %s collected", batch.pk)


def _move(job: Job, **changes: object) -> None:
    hold(job, updated_at=timezone.now(), **changes)


def _failed(failure: gemini.GeminiAnswer | pool.GeminiError | None) -> GenerationFailed:
    """Why a job of a batch failed, in the words of the item that did."""
    if failure is None:
        return GenerationFailed(Job.ErrorCode.BATCH_ENDED, "Gemini's batch came back without an answer for it.")
    if isinstance(failure, pool.Refused):
        return GenerationFailed(Job.ErrorCode(failure.code), failure.message, refusal=failure.refusal)
    if isinstance(failure, pool.UpstreamUnavailable):
        return GenerationFailed(Job.ErrorCode.UPSTREAM_ERROR, f"Gemini failed this request of the batch: {failure}")
    return GenerationFailed(Job.ErrorCode.REQUEST_REJECTED, f"Gemini rejected the request: {failure}")


ENDED_WHY = {
    "BATCH_STATE_EXPIRED": "Gemini's batch expired before it was done (the Batch API takes up to 48 hours).",
    "BATCH_STATE_CANCELLED": "Gemini's batch was cancelled.",
}


def _ended(batch: Batch, state: str, error: str) -> None:
    """The batch ended without results: each job goes online where its caller allowed it, else fails."""
    why = ENDED_WHY.get(state) or f"Gemini's batch failed{f': {error}' if error else ''}."
    for job in _running(batch):
        if job.options.get("batch_fallback"):
            Job.objects.filter(pk=job.pk, state=Job.State.RUNNING, batch=batch).update(
                state=Job.State.PENDING,
                phase=Job.Phase.QUEUED,
                priority=Job.Priority.BACKGROUND,
                batch=None,
                updated_at=timezone.now(),
            )
        else:
            fail(job, Job.ErrorCode.BATCH_ENDED, why)
    Batch.objects.filter(pk=batch.pk).update(
        state=Batch.State.ENDED, google_state=state, error=why, finished_at=timezone.now()
    )
    log.warning("Batch %s ended at Google (%s): %s", batch.pk, state, why)


def cancel(job: Job, running: bool = False) -> bool:
    """Cancel a job (queue.cancel); a job in a batch is left out of it, and the Gemini batch is
    cancelled when no job of it is left."""
    cancelled = cancel_waiting(job, running or job.batch_id is not None)
    if job.batch_id is None:
        return cancelled
    batch = Batch.objects.select_related("key").filter(pk=job.batch_id, state=Batch.State.SUBMITTED).first()
    if cancelled and batch is not None and not batch.jobs.filter(state=Job.State.RUNNING).exists():
        lease = _lease(batch)
        try:
            if lease is not None:
                gemini.cancel_batch(lease, batch.name)
        except pool.GeminiError as error:
            log.warning("Batch %s: Gemini did not take the cancel: %s", batch.pk, error)
        Batch.objects.filter(pk=batch.pk).update(
            state=Batch.State.ENDED, error="Every job of it was cancelled.", finished_at=timezone.now()
        )
    return cancelled
