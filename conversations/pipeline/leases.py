"""A running job's lease: the claim that makes a run the job's only writer, renewed while the run
lasts by one heartbeat thread per process, and the progress figures a run reports."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from conversations.models import Job

log = logging.getLogger(__name__)


def progress_at(num_images: int, images_done: int) -> int:
    """The job's progress (percent) once `images_done` of its images are made."""
    return 10 + (80 * images_done) // num_images


def claim_changes(now: dt.datetime) -> dict[str, Any]:
    """What a claim writes, in the conditional UPDATE that makes it: the job runs, its attempts are
    counted up (a run is known by its attempt), its lease starts."""
    return {
        "state": Job.State.RUNNING,
        "phase": Job.Phase.INITIALIZING,
        "progress": 5,
        "attempts": F("attempts") + 1,
        "lease_until": now + dt.timedelta(seconds=lease_seconds()),
        "started_at": Coalesce(F("started_at"), now),
        "updated_at": now,
    }


def lease_seconds() -> int:
    # Shorter than django-q2's retry (settings checks it), so a redelivered task finds a dead run's
    # lease expired; short, so the sweep takes over a dead run's job within a minute or two.
    return int(settings.JOB_LEASE_SECONDS)


class LeaseLost(Exception):
    """Another run holds the job now: this one stalled past its lease and stops, writing nothing more."""


def hold(job: Job, **changes: Any) -> None:
    """Renew this run's lease, with `changes`; raises LeaseLost when the job is no longer this run's.

    The run is identified by its claim (`attempts`), so a run that stalled past its lease and was
    taken over can't overwrite the run that took over, nor store its images twice.
    """
    now = timezone.now()
    lease_until = now + dt.timedelta(seconds=lease_seconds())
    held = Job.objects.filter(pk=job.pk, state=Job.State.RUNNING, attempts=job.attempts).update(
        lease_until=lease_until, **changes
    )
    if not held:
        raise LeaseLost(f"Job {job.pk}: another run took over (attempt {job.attempts} lost its lease).")
    job.lease_until = lease_until
    for name, value in changes.items():
        setattr(job, name, value)


def keep(job: Job) -> None:
    """Renew the lease once a third of it has gone by (the heartbeat's beat)."""
    lease_until = job.lease_until
    if lease_until is not None and timezone.now() >= lease_until - dt.timedelta(seconds=lease_seconds() * 2 / 3):
        hold(job)


class Heartbeat:
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
        if lease_seconds() / 6 < self._period:  # (tests change the lease; a server doesn't)
            self._joined.set()
        try:
            yield
        finally:
            with self._lock:
                self._runs.pop(job.pk, None)

    def _beat(self) -> None:
        while True:
            self._period = lease_seconds() / 6  # renewed within a sixth of a lease of its third
            self._joined.wait(timeout=self._period)
            self._joined.clear()
            with self._lock:
                runs = list(self._runs.values())
            for job in runs:
                try:
                    keep(job)
                except LeaseLost:
                    with self._lock:
                        self._runs.pop(job.pk, None)
                except Exception:  # a busy database...: the next beat tries again; the heartbeat never dies
                    log.warning("Could not renew the lease of job %s", job.pk, exc_info=True)
            if runs:  # no connection held between beats (a test database can then be dropped)
                connections.close_all()


HEARTBEAT = Heartbeat()
