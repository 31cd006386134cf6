"""The queue's order and each user's room in it (conversations.pipeline.queue): claimed by priority,
then in turns between users counting what each has running, then by age; a user past their limit
is refused with 429 and Retry-After. Proven by the order of claims, not by timing."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from conversations import pipeline
from conversations.models import Job, QueueLimit

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(db: Any) -> Any:
    return get_user_model().objects.create_user("alice-q")


@pytest.fixture
def bob(db: Any) -> Any:
    return get_user_model().objects.create_user("bob-q")


def queued(user: Any, prompt: str, priority: int = Job.Priority.BACKGROUND) -> Job:
    return pipeline.submit(pipeline.GenerationRequest(user=user, prompt=prompt, priority=priority))


def claims(count: int) -> list[str]:
    claimed = []
    for _ in range(count):
        job = pipeline.claim_next()
        claimed.append(job.user_message.text if job else "-")
    return claimed


def test_a_burst_of_one_user_is_claimed_in_turns_with_another_users_jobs(alice: Any, bob: Any) -> None:
    for n in range(1, 7):
        queued(alice, f"a{n}")
    queued(bob, "b1")
    queued(bob, "b2")
    assert claims(9) == ["a1", "b1", "a2", "b2", "a3", "a4", "a5", "a6", "-"]


def test_a_users_running_jobs_count_so_a_newcomer_goes_before_their_next(alice: Any, bob: Any) -> None:
    for n in range(1, 5):
        queued(alice, f"a{n}")
    assert claims(2) == ["a1", "a2"]  # alice now has two running
    queued(bob, "b1")
    assert claims(3) == ["b1", "a3", "a4"]


def test_a_watched_chat_turn_goes_first_and_batch_priced_work_waits_for_a_batch(alice: Any, bob: Any) -> None:
    queued(alice, "batch", Job.Priority.BATCH)
    for n in range(1, 4):
        queued(alice, f"a{n}")
    queued(bob, "chat", Job.Priority.INTERACTIVE)
    assert claims(5) == ["chat", "a1", "a2", "a3", "-"]  # pipeline.batches packs it, not the online queue


def test_the_chat_starts_its_turns_watched_and_queued_doors_in_the_background(user: Any) -> None:
    chat = pipeline.start(pipeline.GenerationRequest(user=user, prompt="x", source="chat"), pipeline.RunMode.BACKGROUND)
    api = pipeline.start(
        pipeline.GenerationRequest(user=user, prompt="y"), pipeline.RunMode.QUEUE, require_usable_key=False
    )
    assert (chat.priority, api.priority) == (Job.Priority.INTERACTIVE, Job.Priority.BACKGROUND)


def test_a_job_whose_worker_died_is_taken_over_in_its_old_place(alice: Any, bob: Any) -> None:
    dead = queued(alice, "a1")
    queued(bob, "b1")
    assert claims(1) == ["a1"]
    Job.objects.filter(pk=dead.pk).update(lease_until=timezone.now() - dt.timedelta(seconds=1))
    taken_over = pipeline.claim_next()
    assert taken_over is not None and (taken_over.pk, taken_over.attempts) == (dead.pk, 2)
    assert claims(2) == ["b1", "-"]


def test_a_job_out_of_tries_is_left_to_the_sweep(alice: Any, settings: Any) -> None:
    job = queued(alice, "a1")
    Job.objects.filter(pk=job.pk).update(
        state=Job.State.RUNNING,
        attempts=settings.Q_CLUSTER["max_attempts"],
        lease_until=timezone.now() - dt.timedelta(seconds=1),
    )
    assert pipeline.claim_next() is None


def test_a_turn_knows_its_place_in_line(alice: Any, bob: Any) -> None:
    first = queued(alice, "chat 1", Job.Priority.INTERACTIVE)
    background = queued(alice, "background")
    second = queued(bob, "chat 2", Job.Priority.INTERACTIVE)
    assert [pipeline.place_in_line(job) for job in (first, second, background)] == [1, 2, 3]
    pipeline.claim_next()
    second.refresh_from_db()
    assert pipeline.place_in_line(second) == 1


def test_past_the_per_user_limit_a_job_is_refused_with_retry_after(alice: Any, bob: Any, settings: Any) -> None:
    settings.MAX_JOBS_PER_USER = 2
    queued(alice, "a1")
    queued(alice, "a2")
    with pytest.raises(pipeline.QueueFull) as full:
        queued(alice, "a3")
    assert full.value.status == 429 and int(full.value.headers["Retry-After"]) >= 1
    assert "2 jobs waiting or running" in full.value.message
    queued(bob, "b1")  # another user's room is their own
    queued(alice, "later", Job.Priority.BATCH)  # batch work doesn't count against it
    assert Job.objects.filter(user=alice).count() == 3


def test_a_users_own_limit_wins(alice: Any, settings: Any) -> None:
    settings.MAX_JOBS_PER_USER = 1000
    QueueLimit.objects.create(user=alice, jobs=1)
    queued(alice, "a1")
    with pytest.raises(pipeline.QueueFull):
        queued(alice, "a2")


def test_the_jobs_api_answers_a_full_queue_with_its_429_and_retry_after(
    api: Any, user: Any, add_key: Any, settings: Any
) -> None:
    add_key()
    settings.MAX_JOBS_PER_USER = 1
    assert api.post("/api/images/generate", {"prompt": "un"}, format="json").status_code == 202
    refused = api.post("/api/images/generate", {"prompt": "deux"}, format="json")
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    assert "1 jobs waiting or running" in str(refused.json())


def test_the_chat_says_so_when_the_users_queue_is_full(client: Any, user: Any, add_key: Any, settings: Any) -> None:
    add_key()
    settings.MAX_JOBS_PER_USER = 1
    settings.CHAT_EXECUTION = "queue"
    client.force_login(user)
    client.post("/c/send", {"prompt": "one"}, headers={"HX-Request": "true"})
    refused = client.post("/c/send", {"prompt": "two"}, headers={"HX-Request": "true"}).content.decode()
    assert "1 jobs waiting or running" in refused
    assert Job.objects.count() == 1
