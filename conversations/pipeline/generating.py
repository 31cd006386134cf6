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
from keys.gemini import client as gemini

log = logging.getLogger(__name__)

MAX_RESTS_WAITED = 3  # per image and key: 429s after which the key is given up for this request


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
    made = Generated({}, outputs, None, edited_from)
    todo = [index for index in range(job.num_images) if index not in outputs]
    if job.phase != Job.Phase.GENERATING:
        move(phase=Job.Phase.GENERATING, progress=progress_at(job.num_images, len(outputs)))
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
                    outputs[index] = store_output(job, index, answer, pool.report(lease, None, answer.usage), made)
                    move(progress=progress_at(job.num_images, len(outputs)))
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
