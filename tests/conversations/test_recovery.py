"""Jobs whose worker died are requeued by the scheduled sweep, and given up after max_attempts."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone
from django_q.models import Schedule

from conversations import pipeline
from conversations.models import Job
from gallery.models import Image

pytestmark = pytest.mark.django_db


def stale_job(user: Any, attempts: int) -> Job:
    job = pipeline.submit(pipeline.GenerationRequest(user=user, prompt="a lighthouse", source="jobs"))
    Job.objects.filter(pk=job.pk).update(
        state=Job.State.RUNNING, attempts=attempts, lease_until=timezone.now() - dt.timedelta(seconds=1)
    )
    return job


def test_it_requeues_a_job_whose_worker_died_and_it_completes(
    user: Any, add_key: Any, inline_tasks: None, django_capture_on_commit_callbacks: Any
) -> None:
    add_key()
    job = stale_job(user, attempts=1)
    with django_capture_on_commit_callbacks(execute=True):
        summary = pipeline.recover_stale_jobs()
    assert summary == "Stale jobs: 1 requeued, 0 given up."
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED and job.attempts == 2
    assert Image.objects.filter(job=job).count() == 1


def test_it_leaves_a_running_job_with_a_live_lease_alone(user: Any, add_key: Any) -> None:
    job = stale_job(user, attempts=1)
    Job.objects.filter(pk=job.pk).update(lease_until=timezone.now() + dt.timedelta(minutes=5))
    assert pipeline.recover_stale_jobs() == "Stale jobs: 0 requeued, 0 given up."


def test_it_gives_up_after_max_attempts_with_a_clear_reason(user: Any, settings: Any) -> None:
    job = stale_job(user, attempts=settings.Q_CLUSTER["max_attempts"])
    assert pipeline.recover_stale_jobs() == "Stale jobs: 0 requeued, 1 given up."
    job.refresh_from_db()
    assert job.state == Job.State.FAILED and "stopped 3 times" in job.error


# Plain django_db: pytest-django runs these before any transactional test flushes the
# migrations' data away.
@pytest.mark.django_db
def test_the_sweep_is_scheduled_by_a_migration() -> None:
    schedule = Schedule.objects.get(name="Recover stale jobs")
    assert schedule.func == "conversations.pipeline.recover_stale_jobs" and schedule.minutes == 5
