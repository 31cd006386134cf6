"""The queue of jobs waiting for a generation slot: its order, each user's room in it, what it holds
now, the sweep that puts back jobs whose worker died, and cancelling.

The order is decided when a job is claimed, from the database, so every process and host agrees:
first by priority (a chat turn a person watches, then background work), then in
turns between users (a user's n-th waiting job, counting the ones they have running, goes after
every other user's earlier turns), then by age. django-q2's tasks only wake a process to claim
the next job in that order; they carry a job's id for the logs, not to choose it.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Min, OuterRef, Q, QuerySet, Subquery, Window
from django.db.models.functions import Coalesce, RowNumber
from django.utils import timezone

from conversations.background import enqueue_on_commit
from conversations.models import Job
from conversations.pipeline.leases import claim_changes, lease_seconds
from conversations.pipeline.results import fail, notify
from conversations.signals import job_finished
from gallery.models import Image

log = logging.getLogger(__name__)


def enqueue(job: Job) -> None:
    """Wake the cluster to claim the next job, once the surrounding transaction commits."""
    enqueue_on_commit("conversations.tasks.run_job", str(job.id), task_name=f"job-{job.id}")


def _waiting(now: dt.datetime) -> Q:
    """Jobs that wait for a run: pending, or running under a lease that ran out (their worker died)
    with tries left (the sweep gives up on the others). Batch-priced jobs wait for a batch instead
    (pipeline.batches), never for a run."""
    max_attempts = int(settings.Q_CLUSTER["max_attempts"])  # type: ignore[call-overload]
    pending = Q(state=Job.State.PENDING) & ~Q(priority=Job.Priority.BATCH)
    return pending | Q(state=Job.State.RUNNING, lease_until__lt=now, attempts__lt=max_attempts, batch__isnull=True)


def _in_line(now: dt.datetime) -> QuerySet[Job]:
    """The waiting jobs, each with its turn: its place among its user's waiting jobs, after the jobs
    the user has running. Ordered as they are claimed."""
    running = (
        Job.objects.filter(user=OuterRef("user"), state=Job.State.RUNNING, lease_until__gte=now)
        .values("user")
        .annotate(n=Count("pk"))
        .values("n")
    )
    turn = Window(RowNumber(), partition_by=[F("user_id")], order_by=F("created_at").asc())
    return (
        Job.objects.filter(_waiting(now))
        .annotate(turn=turn + Coalesce(Subquery(running), 0))
        .order_by("priority", "turn", "created_at", "pk")
    )


def claim(count: int = 1) -> list[Job]:
    """Claim up to `count` waiting jobs, the next in the queue's order, each with one conditional
    UPDATE; the jobs claimed, in that order (none: nothing waits). A job another process claimed
    meanwhile is passed over."""
    now = timezone.now()
    candidates = list(_in_line(now).values_list("pk", flat=True)[:count])
    # One transaction: on SQLite the claims queue for the write lock with this process's other
    # writers (nanoclone.sqlite) once, instead of sleeping in SQLite's busy handler while they write.
    with transaction.atomic():
        claimed = [pk for pk in candidates if Job.objects.filter(_waiting(now), pk=pk).update(**claim_changes(now))]
    jobs = Job.objects.select_related("conversation", "user_message", "user").in_bulk(claimed)
    return [jobs[pk] for pk in claimed]


def claim_next() -> Job | None:
    """Claim the next waiting job in the queue's order, or None when none waits."""
    for _ in range(20):  # another process may claim the one picked: pick again
        if jobs := claim(1):
            return jobs[0]
        if not _in_line(timezone.now()).exists():
            return None
    return None


def place_in_line(job: Job) -> int:
    """1 for the next job to be claimed: how many waiting jobs go before this one, plus one. Only
    jobs of its priority or higher can, so a chat turn counts only other chat turns."""
    ahead = _in_line(timezone.now()).filter(priority__lte=job.priority).values_list("pk", flat=True)
    return next((number for number, pk in enumerate(ahead, 1) if pk == job.pk), 0)


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
    """Wake the cluster for jobs whose worker died (lease expired) or that waited long; give up after
    max_attempts runs. A running cluster's dispatchers take such jobs over by themselves (they are in
    line); this sweep also finishes those of an inline run whose web process died, and gives up."""
    now = timezone.now()
    max_attempts = int(settings.Q_CLUSTER["max_attempts"])  # type: ignore[call-overload]
    forgotten = now - dt.timedelta(seconds=int(settings.Q_CLUSTER["retry"]))  # type: ignore[call-overload]
    stale = Job.objects.filter(
        Q(state=Job.State.RUNNING, lease_until__lt=now, batch__isnull=True)
        | Q(state=Job.State.PENDING, created_at__lt=forgotten, priority__lt=Job.Priority.BATCH)
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
        enqueue(job)  # a wake-up: the job is in line already, in its old place (claims take expired ones over)
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
