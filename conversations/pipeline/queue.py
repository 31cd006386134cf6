"""The queue of jobs waiting for the django-q2 cluster: enqueueing, what it holds now, the sweep
that recovers jobs whose worker died, and cancelling."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Min, Q
from django.utils import timezone

from conversations.background import enqueue_on_commit
from conversations.models import Job
from conversations.pipeline.leases import lease_seconds
from conversations.pipeline.results import fail, notify
from conversations.signals import job_finished
from gallery.models import Image

log = logging.getLogger(__name__)


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
                lease_until=now + dt.timedelta(seconds=lease_seconds())
            ):
                fail(job, Job.ErrorCode.INTERNAL, f"The worker running this job stopped {job.attempts} times; gave up.")
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
        notify(job_finished, job)
    return bool(cancelled)
