"""Running a job: claim it (one conditional UPDATE), generate, record how it ended. run() takes an
id and is safe to run twice; the chat's thread mode runs it on a thread of the web process."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from django.db import OperationalError, close_old_connections, connections
from django.db.models import Q
from django.utils import timezone

from conversations.models import Job
from conversations.pipeline.generating import Recorded, generate_all
from conversations.pipeline.leases import HEARTBEAT, LeaseLost, claim_changes, hold
from conversations.pipeline.results import GenerationFailed, fail, notify, succeed
from conversations.signals import job_progress
from gallery import storage

log = logging.getLogger(__name__)

THREAD_ATTEMPTS = 5
STORE_RETRY_SECONDS = 5  # a store out of reach: when to try again
JOB_THREAD_PREFIX = "job-"  # how tests find the job threads still running


def run(job_id: uuid.UUID | str, on_progress: Callable[[Job], None] | None = None) -> Job | None:
    """Claim and run a job. Returns the job, or None when it no longer exists.

    Every progress step is written and sent as the job_progress signal (the chat and webhooks
    listen, pollers read it), and told to `on_progress`.
    """
    now = timezone.now()
    claimed = (
        Job.objects.filter(pk=job_id)
        .filter(Q(state=Job.State.PENDING) | Q(state=Job.State.RUNNING, lease_until__lt=now))
        .update(**claim_changes(now))
    )
    job = Job.objects.select_related("conversation", "user_message", "user").filter(pk=job_id).first()
    if job is None or not claimed:
        return job  # gone, finished, or another worker holds it
    return run_claimed(job, on_progress, watched=True)


def run_claimed(
    job: Job, on_progress: Callable[[Job], None] | None, watched: bool, first: Recorded | None = None
) -> Job:
    """Run a job this run has claimed. `watched`: others may follow it (a queued job's pollers,
    the chat, webhooks), so each step is written and signalled; else only `on_progress` hears it
    (it also hears the end). `first`: what recording.record() had in hand when it claimed the job (its first
    key, its history)."""

    def move(**changes: Any) -> None:
        if watched:
            hold(job, updated_at=timezone.now(), **changes)
        else:
            for name, value in changes.items():
                setattr(job, name, value)
        progressed()

    def progressed() -> None:
        if watched:
            notify(job_progress, job)
        if on_progress is not None:
            on_progress(job)

    progressed()
    with HEARTBEAT.holding(job):
        job = _attempt(job, move, first)
    if on_progress is not None:  # the last step: how it ended
        on_progress(job)
    return job


def _attempt(job: Job, move: Callable[..., None], first: Recorded | None) -> Job:
    """Generate, then record the outcome: the job as it ended (or as the run that took it over left it)."""
    try:
        return succeed(job, generate_all(job, move, first), move)
    except LeaseLost as lost:
        job.refresh_from_db()
        if job.state == Job.State.CANCELLED:
            log.info("Job %s was cancelled; this run stops.", job.pk)
        else:
            log.warning("%s This run stops.", lost)
        return job
    except GenerationFailed as failure:
        return fail(job, failure.code, failure.message, failure.retry_after, failure.refusal)
    except storage.MissingFile as missing:  # an earlier turn's image, gone from the store
        return fail(job, Job.ErrorCode.FILE_MISSING, f"{missing} This conversation can't go on from it.")
    except storage.StoreUnavailable as down:
        later = timezone.now() + dt.timedelta(seconds=STORE_RETRY_SECONDS)
        return fail(job, Job.ErrorCode.STORE_UNAVAILABLE, f"{down.message} ({down})", later)
    except Exception:
        log.exception("Job %s failed unexpectedly", job.pk)
        return fail(
            job, Job.ErrorCode.INTERNAL, "NanoClone hit an internal error while generating; it has been logged."
        )


def start_thread(job_id: uuid.UUID) -> None:
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
