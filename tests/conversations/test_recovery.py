"""Jobs whose worker died are requeued by the scheduled sweep, and given up after max_attempts."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest
from django.db import connections
from django.db.models import F
from django.utils import timezone
from django_q.models import Schedule
from django_q.signals import post_spawn

from conversations import pipeline
from conversations.models import Job
from gallery.models import Image
from tests.conftest import replay_migrations

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


@pytest.mark.django_db
def test_the_sweep_runs_every_minute_by_default() -> None:
    replay_migrations(
        "conversations.migrations.0003_recover_stale_jobs_schedule",
        "conversations.migrations.0008_recovery_schedule_from_settings",
    )
    schedule = Schedule.objects.get(name="Recover stale jobs")
    assert schedule.func == "conversations.pipeline.recover_stale_jobs"
    assert schedule.schedule_type == Schedule.MINUTES and schedule.minutes == 1


def test_a_worker_starting_brings_the_sweep_in_line_with_the_settings(settings: Any) -> None:
    settings.RECOVERY_INTERVAL_MINUTES = 3
    post_spawn.send(sender="django_q", proc_name="Worker-1")
    generations = pipeline.generations()
    generations.stop()  # the signal also started this process's dispatcher: no cluster in a test
    assert generations.join(10)
    assert Schedule.objects.get(name="Recover stale jobs").minutes == 3


def run_in_thread(job: Job) -> threading.Thread:
    def target() -> None:
        try:
            pipeline.run(job.id)
        finally:
            connections.close_all()

    thread = threading.Thread(target=target)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("shared_memory_db_reads")  # the job's thread writes while this one reads
def test_a_long_generation_keeps_renewing_its_lease_so_the_sweep_leaves_it_alone(
    user: Any, add_key: Any, settings: Any
) -> None:
    """GIVEN a 3 s lease and a Gemini call of 5 s WHEN the sweep runs all along THEN it never takes the
    job over: the lease keeps moving ahead of the clock, and the job completes in one attempt."""
    settings.JOB_LEASE_SECONDS = 3
    add_key("emu-slow5000-long")
    job = pipeline.submit(pipeline.GenerationRequest(user=user, prompt="a slow lighthouse", source="jobs"))
    thread = run_in_thread(job)
    leases = []
    while thread.is_alive():
        assert pipeline.recover_stale_jobs() == "Stale jobs: 0 requeued, 0 given up."
        row = Job.objects.get(pk=job.pk)
        if row.state == Job.State.RUNNING and row.phase == Job.Phase.GENERATING:
            assert row.lease_until is not None and row.lease_until > timezone.now()
            leases.append(row.lease_until)
        time.sleep(0.25)
    thread.join()
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED and job.attempts == 1
    assert len(set(leases)) >= 3  # renewed while Gemini was answering, about every second


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("shared_memory_db_reads")  # the job's thread writes while this one reads
def test_a_run_that_lost_its_lease_stops_without_writing(user: Any, add_key: Any, settings: Any) -> None:
    """GIVEN a run waiting on Gemini WHEN another run takes the job over THEN the first one stores no
    image and records no outcome: the job stays the other run's."""
    settings.JOB_LEASE_SECONDS = 3
    add_key("emu-slow2500-lost")
    job = pipeline.submit(pipeline.GenerationRequest(user=user, prompt="a contested lighthouse", source="jobs"))
    thread = run_in_thread(job)
    deadline = time.monotonic() + 10
    while Job.objects.get(pk=job.pk).phase != Job.Phase.GENERATING and time.monotonic() < deadline:
        time.sleep(0.05)
    Job.objects.filter(pk=job.pk).update(attempts=F("attempts") + 1)  # what a second run's claim does
    thread.join()
    job.refresh_from_db()
    assert job.state == Job.State.RUNNING and job.attempts == 2
    assert not Image.objects.filter(job=job).exists()
    assert job.assistant_message is None
