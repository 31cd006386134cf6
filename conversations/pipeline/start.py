"""start(): the doors' one call. It replays a request whose Idempotency-Key was seen, records the
request, then runs it as the door's RunMode says: now, on the cluster, or on a thread (the chat)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from django.conf import settings
from django.db import IntegrityError, transaction

from conversations.models import Job
from conversations.pipeline.dispatch import generations
from conversations.pipeline.queue import enqueue
from conversations.pipeline.recording import record, replayed, settled
from conversations.pipeline.request import GenerationRequest, RunMode
from conversations.pipeline.running import run_claimed, start_thread


def start(
    request: GenerationRequest,
    mode: RunMode,
    on_progress: Callable[[Job], None] | None = None,
    require_usable_key: bool | None = None,
) -> Job:
    """The doors' one call: submit the request and run it as `mode` says. Raises InvalidRequest.

    INLINE returns the finished job; `on_progress` then hears each of its progress steps. A request at
    the batch price (Job.Priority.BATCH) is queued whatever `mode` says: pipeline.batches sends it.
    `require_usable_key` (the default for QUEUE) refuses the request with pool.NoUsableKey when no
    key could serve it, recording nothing, rather than recording a job only to fail it.
    """
    if request.priority == Job.Priority.BATCH:
        mode = RunMode.QUEUE  # work at the batch price waits for a Gemini batch, whatever the door's mode
    if require_usable_key is None:
        require_usable_key = mode is RunMode.QUEUE
    if request.priority is None:
        watched = mode is RunMode.BACKGROUND  # the chat: a person is waiting on the page
        request = replace(request, priority=Job.Priority.INTERACTIVE if watched else Job.Priority.BACKGROUND)
    inline = mode is RunMode.INLINE
    # A replay must not fetch or store its references again, so a request with some looks first;
    # one without is told apart by one_job_per_key when its job is inserted, at no extra read.
    if (request.references or request.history) and (first := replayed(request)) is not None:
        return settled(first) if inline else first
    for _ in range(2):  # again once, when the key an earlier request used had expired
        try:
            recorded = record(request, require_usable_key, claim=inline)
            break
        except IntegrityError:  # one_job_per_key: the job of this Idempotency-Key's first request is the answer
            if not request.idempotency_key:
                raise
            if (first := replayed(request)) is not None:
                return settled(first) if inline else first
    else:
        raise IntegrityError(f"Idempotency-Key {request.idempotency_key!r} stays taken.")
    job = recorded.job
    if inline:
        # Nobody else waits on this job: its progress is told to `on_progress`, not written.
        return run_claimed(job, on_progress, watched=False, first=recorded)
    if mode is RunMode.BACKGROUND and settings.CHAT_EXECUTION == "thread":
        job_id = job.id
        transaction.on_commit(lambda: start_thread(job_id))
    else:
        enqueue(job)  # wakes a cluster process, here or on another host
        transaction.on_commit(generations().wake)  # and this one's at once, when it runs a cluster
    return job
