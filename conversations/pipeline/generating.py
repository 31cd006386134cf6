"""Generating a job's images through the key pool: a key for each call, waiting out short rests,
the next key after a key-level failure, backing off on upstream trouble, several images at once."""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils import timezone

from conversations.background import release_connection
from conversations.models import Job
from conversations.pipeline.history import history_and_edited
from conversations.pipeline.leases import progress_at
from conversations.pipeline.results import Generated, GenerationFailed, store_output
from gallery.models import Image
from keys import pool
from keys.catalogue import replacement_for, resolve_model
from keys.gemini import client as gemini

log = logging.getLogger(__name__)


@dataclass
class Recorded:
    """What recording.record() wrote, and what a run it claimed needs from what it had in hand."""

    job: Job
    lease: pool.Lease | None = None  # the first image's key, taken with the claim (None: none free now)
    # The whole history Gemini gets, when the job starts a conversation (None: history() reads it).
    turns: list[gemini.Turn] | None = None
    edited_from: uuid.UUID | None = None


@dataclass
class _Tries:
    dead: set[int] = field(default_factory=set)  # keys that won't serve this image: invalid, or their route refused
    flaky: set[int] = field(default_factory=set)  # keys that just had a transient error
    transient: int = 0
    waited_until: float | None = None  # the image waits for resting keys up to MAX_QUEUE_WAIT, all waits together
    retired: str = ""  # what Gemini said when it retired the model for a key's project
    location: str = ""  # what Google said when it refused the location a key's calls came from


def _acquire(job: Job, tries: _Tries, move: Callable[..., None], tokens: int) -> pool.Lease:
    """The next key for this image; when every key rests for only a short while, wait for the first."""
    while True:
        if tries.waited_until is None:
            tries.waited_until = time.monotonic() + settings.MAX_QUEUE_WAIT
        try:
            caller = pool.Caller(job.user_id, job.source, str(job.id), job.resolution)
            lease = pool.acquire(
                job.model,
                exclude=tries.dead | tries.flaky,
                caller=caller,
                wait=max(0.0, tries.waited_until - time.monotonic()),
                tokens=tokens,
            )
            if lease.not_before is not None:  # a place booked in a coming window of its project's quota
                until_place = (lease.not_before - timezone.now()).total_seconds()
                if until_place > 0:
                    if job.phase != Job.Phase.WAITING:
                        move(phase=Job.Phase.WAITING)
                    log.info(
                        "Job %s waits %.1f s for its place in %s's quota window", job.pk, until_place, lease.masked
                    )
                    release_connection()
                    time.sleep(until_place)
            return lease
        except pool.NoUsableKey as none:
            if tries.flaky:  # every other key is gone: retrying a flaky one beats failing
                tries.flaky.clear()
                continue
            wait_for = (none.retry_after - timezone.now()).total_seconds() if none.retry_after else None
            if wait_for is None or time.monotonic() + wait_for > tries.waited_until:
                raise _none_left(job, tries, none) from none
            why = none.message
        if job.phase != Job.Phase.WAITING:
            move(phase=Job.Phase.WAITING)
        log.info("Job %s waits %.1f s for a key to rest out (%s)", job.pk, wait_for, why)
        release_connection()
        time.sleep(max(0.05, wait_for) + random.uniform(0, 0.2))  # jitter: waiters don't all wake at once


def _none_left(job: Job, tries: _Tries, none: pool.NoUsableKey) -> GenerationFailed:
    """Why the image can't be made, in the words of what refused it."""
    if tries.location:
        return GenerationFailed(
            Job.ErrorCode.LOCATION_REFUSED,
            f'Google refuses calls from where this server is ("{tries.location}"), and no key calls from '
            "elsewhere. Send the calls through a region Google serves: a key's base URL on the keys page "
            "(a proxy there), or NANOCLONE_GEMINI_BASE_URL for every key.",
        )
    if said := tries.retired or none.retired:
        model = resolve_model(job.model)
        instead = replacement_for(model.id) if model is not None else None
        use = f" Use {instead.id} ({instead.label}) instead." if instead else ""
        return GenerationFailed(
            Job.ErrorCode.REQUEST_REJECTED,
            f'Gemini says {job.model} is no longer available ("{said}"), and no key\'s project still has it.{use}',
        )
    return GenerationFailed(Job.ErrorCode.NO_USABLE_KEY, none.message, none.retry_after)


def generate_all(job: Job, move: Callable[..., None], first: Recorded | None) -> Generated:
    """Generate every image of the job not stored yet, concurrently, each through the pool.

    Several images are called for at once, on a thread each; one image on this thread. Every
    database write stays on this thread.
    """
    if first is not None and first.turns is not None:
        turns, edited_from = first.turns, first.edited_from
    else:
        turns, edited_from = history_and_edited(job)
    # Only a run holding the claim stores outputs, so a first claim (attempt 1) finds none.
    outputs = (
        {image.index: image for image in Image.objects.filter(job=job, role=Image.Role.OUTPUT)}
        if job.attempts > 1
        else {}
    )
    made = Generated({}, outputs, [], edited_from)
    todo = [index for index in range(job.num_images) if index not in outputs]
    if job.phase != Job.Phase.GENERATING:
        move(phase=Job.Phase.GENERATING, progress=progress_at(job.num_images, made.slots_done(job.num_images)))
    tries = {index: _Tries() for index in todo}
    leased = first.lease if first is not None else None  # taken with the claim, for the first call
    options = options_for(job)
    executor = ThreadPoolExecutor(max_workers=len(todo), thread_name_prefix="gemini") if len(todo) > 1 else None
    try:
        running: dict[Future[gemini.GeminiAnswer], tuple[int, pool.Lease]] = {}

        def call_gemini(index: int) -> None:
            nonlocal leased
            lease, leased = leased or _acquire(job, tries[index], move, gemini.input_tokens(turns)), None
            if job.phase != Job.Phase.GENERATING:
                move(phase=Job.Phase.GENERATING)
            call = (executor.submit if executor else _called)(gemini.generate, lease, job.model, turns, options)
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
                    if made.slots_done(job.num_images) + 1 == job.num_images:  # stored with the job's success
                        made.unstored.append((index, answer, lease))
                        continue
                    store_output(job, index, answer, pool.report(lease, None, answer.usage), made)
                    move(progress=progress_at(job.num_images, made.slots_done(job.num_images)))
                    continue
                # What the failure means for this request (the key's side was reported above).
                if isinstance(failure, pool.KeyRejected):
                    tries[index].dead.add(lease.key_id)
                elif isinstance(failure, pool.LocationRefused):  # every key calling from there: not again
                    tries[index].dead |= pool.same_route(lease)
                    tries[index].location = str(failure)
                elif isinstance(failure, pool.ModelUnavailable):  # its rest keeps the key out
                    tries[index].retired = str(failure)
                elif isinstance(failure, pool.UpstreamUnavailable):
                    tries[index].flaky.add(lease.key_id)
                    tries[index].transient += 1
                    if tries[index].transient > settings.UPSTREAM_RETRIES:
                        raise GenerationFailed(Job.ErrorCode.UPSTREAM_ERROR, _upstream_message(failure)) from failure
                    backoff = settings.UPSTREAM_BACKOFF_SECONDS * 2 ** (tries[index].transient - 1)
                    release_connection()
                    time.sleep(backoff * random.uniform(0.8, 1.2))
                elif isinstance(failure, pool.Refused):
                    raise GenerationFailed(
                        Job.ErrorCode(failure.code), failure.message, refusal=failure.refusal
                    ) from failure
                elif not isinstance(failure, pool.KeyExhausted):  # a 429's rest keeps the key out
                    raise GenerationFailed(
                        Job.ErrorCode.REQUEST_REJECTED, f"Gemini rejected the request: {failure}"
                    ) from failure
                call_gemini(index)  # a key-level failure: the same image on the next key
    finally:
        # A failure doesn't wait for the other images' calls; their answers are dropped.
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
    return made


def _upstream_message(failure: pool.GeminiError) -> str:
    tries = settings.UPSTREAM_RETRIES + 1
    if isinstance(failure, pool.UnreadableAnswer):
        return f"{failure}; it came so {tries} times. Try again later."
    return f"Gemini is not answering properly right now ({failure}). Try again later."


def _called(function: Callable[..., gemini.GeminiAnswer], *args: Any) -> Future[gemini.GeminiAnswer]:
    """function(*args) called now, on this thread, as the finished Future an executor would give."""
    release_connection()  # this thread now waits on Gemini, seconds
    future: Future[gemini.GeminiAnswer] = Future()
    try:
        future.set_result(function(*args))
    except Exception as error:  # what result() raises, as from a thread
        future.set_exception(error)
    return future


def options_for(job: Job) -> gemini.Options:
    return gemini.Options(job.aspect_ratio, job.resolution, job.thinking_level, job.grounding)
