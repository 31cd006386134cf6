"""Gemini's quotas over the emulator: a 429 rests only what is spent (that model, on that key or its
project), per-minute until the retry delay, per-day until the next quota day; short rests are waited
out; unreachable keys; the catalogue check against models.list."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone

from conversations import pipeline
from conversations.models import Job
from keys import checks, pool
from keys.models import ApiKey, KeyRest, QuotaLimit
from tests.conftest import emulator_requests

pytestmark = pytest.mark.django_db

FLASH, PRO = "gemini-nano-banana-2.1", "gemini-3-pro-image"


def unique(prefix: str) -> str:
    # The emulator counts quota per project and model for its whole lifetime: fresh keys every test.
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def generate(api: Any, **body: Any) -> Any:
    return api.post("/api/generate", {"prompt": "a lighthouse at dusk", **body}, format="json")


def tried(emu: Any) -> list[tuple[str, str, int]]:
    return [(r["key_suffix"], r["model"], r["status"]) for r in emulator_requests(emu)]


@pytest.fixture
def short_minute(emu: Any, settings: Any) -> Iterator[float]:
    """Gemini's per-minute window, shortened to 3 s for `emu-rpm<N>-*` keys (and for the pool's
    pacing); the test starts at the beginning of a window, so its first two calls fall into the same
    one even on a loaded machine."""
    emu.quotas.minute_seconds = settings.QUOTA_MINUTE_SECONDS = 3.0
    time.sleep(emu.quotas.minute_seconds - time.time() % emu.quotas.minute_seconds + 0.05)
    yield emu.quotas.minute_seconds
    emu.quotas.minute_seconds = 60.0


def test_a_free_tier_pool_meeting_pro_keeps_serving_flash(api: Any, add_key: Any, emu: Any) -> None:
    add_key(unique("emu-free-a"))
    add_key(unique("emu-free-b"))
    pro = generate(api, model="nano-banana-pro")
    assert pro.status_code == 503  # no free tier for Pro: both keys answer 429, limit 0
    assert "2 with no quota for gemini-3-pro-image (limit 0" in pro.json()["error"]["message"]
    assert "Retry-After" not in pro  # no wait will help: a plan with the model will
    assert [generate(api, prompt=f"cat {n}").status_code for n in range(10)] == [200] * 10
    assert {rest.model for rest in KeyRest.objects.all()} == {PRO}
    assert sum(1 for _, model, status in tried(emu) if status == 429) == 2  # one wasted call per key


def test_a_per_minute_429_rests_until_its_retry_delay_and_the_request_waits(
    user: Any, add_key: Any, emu: Any, short_minute: float
) -> None:
    key = add_key(unique("emu-rpm1-"))
    seen: list[str] = []
    first = pipeline.start(pipeline.GenerationRequest(user=user, prompt="one"), pipeline.RunMode.INLINE)
    second = pipeline.start(
        pipeline.GenerationRequest(user=user, prompt="two"),
        pipeline.RunMode.INLINE,
        on_progress=lambda job: seen.append(job.phase),
    )
    assert (first.state, second.state) == (Job.State.SUCCEEDED, Job.State.SUCCEEDED)
    assert [status for _, _, status in tried(emu)] == [200, 429, 200]
    assert "waiting" in seen  # the job showed that it waited for the key
    # The 429 taught the pool the key's limit (1 a minute); the second call filled the next window,
    # so the key is paced until that window ends (a short wait, not a day).
    learned = QuotaLimit.objects.get(key=key)
    assert (learned.period, learned.learned, learned.limit) == ("minute", 1, 1)
    assert learned.quota_id == "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
    rest = KeyRest.objects.get(key=key)
    assert rest.kind == KeyRest.Kind.PACED and rest.quota_id == learned.quota_id
    assert rest.until - rest.created_at <= dt.timedelta(seconds=short_minute + 0.2)


def test_a_rest_longer_than_the_queue_wait_answers_503_with_retry_after(
    api: Any, add_key: Any, emu: Any, short_minute: float, settings: Any
) -> None:
    settings.MAX_QUEUE_WAIT = 0
    add_key(unique("emu-rpm1-"))
    assert generate(api).status_code == 200
    refused = generate(api)
    assert refused.status_code == 503
    assert 1 <= int(refused.headers["Retry-After"]) <= 4


def test_a_per_day_rest_ends_at_the_next_quota_day(api: Any, add_key: Any) -> None:
    key = add_key(unique("emu-quota1-"))
    assert generate(api).status_code == 200
    assert generate(api).status_code == 503
    rest = KeyRest.objects.get(key=key)
    assert rest.kind == KeyRest.Kind.DAY and rest.until == pool.next_quota_day_start()
    with time_machine.travel(rest.until - dt.timedelta(seconds=1)):
        assert not pool.usable_keys(FLASH).exists()
        assert pool.usable_keys(PRO).exists()  # only the spent model rests
    with time_machine.travel(rest.until + dt.timedelta(seconds=1)):
        assert pool.acquire(FLASH).key_id == key.pk
        pool.reset_daily()  # the scheduled reset clears the expired rest
        assert not KeyRest.objects.exists()


def test_a_429_without_details_rests_the_model_24_hours(api: Any, add_key: Any) -> None:
    key = add_key(unique("emu-429bare-"))
    assert generate(api).status_code == 503
    rest = KeyRest.objects.get(key=key)
    assert rest.kind == KeyRest.Kind.UNKNOWN
    assert dt.timedelta(hours=23, minutes=59) < rest.until - timezone.now() <= dt.timedelta(hours=24)


def test_keys_of_one_project_share_its_quota(api: Any, add_key: Any, emu: Any) -> None:
    project = uuid.uuid4().hex[:6]
    for n in (1, 2, 3):
        add_key(f"emu-quota2-p{project}-{n}", project=f"proj-{project}")
    statuses = [generate(api, prompt=f"picture {n}").status_code for n in range(5)]
    assert statuses == [200, 200, 503, 503, 503]
    assert sum(1 for _, _, status in tried(emu) if status == 429) == 1  # one wasted call for the project
    [rest] = KeyRest.objects.all()
    assert (rest.project, rest.key, rest.model) == (f"proj-{project}", None, FLASH)


def test_an_unreachable_key_is_shown_rests_and_comes_back_after_a_good_test(
    api: Any, add_key: Any, emu: Any, settings: Any
) -> None:
    settings.UPSTREAM_BACKOFF_SECONDS = 0.01
    dead = add_key("emu-ok-dead", base_url="http://127.0.0.1:9")  # nothing listens on the discard port
    add_key("emu-ok-good")
    assert generate(api).status_code == 200
    dead.refresh_from_db()
    assert dead.status == ApiKey.Status.UNREACHABLE and dead.exhausted_until is not None
    assert not pool.usable_keys().filter(pk=dead.pk).exists()
    assert "unreachable" in checks.retest(dead).message
    ApiKey.objects.filter(pk=dead.pk).update(base_url=emu.url)
    dead.refresh_from_db()
    assert checks.retest(dead).ok
    dead.refresh_from_db()
    assert dead.status == ApiKey.Status.ACTIVE and pool.usable_keys().filter(pk=dead.pk).exists()


def test_sync_models_reports_what_the_keys_project_sees(add_key: Any, emu: Any) -> None:
    add_key()
    emu.hidden_models = {PRO}
    emu.extra_models = ["gemini-4-flash-image-preview"]
    try:
        out = StringIO()
        call_command("sync_models", stdout=out)
    finally:
        emu.hidden_models, emu.extra_models = set(), []
    assert "not listed for this key's project: gemini-3-pro-image" in out.getvalue()
    assert "image models the catalogue lacks: gemini-4-flash-image-preview" in out.getvalue()


def test_the_keys_page_api_and_health_show_each_rest_and_what_a_project_has_left(
    api: Any, client: Any, user: Any, add_key: Any, emu: Any
) -> None:
    project = f"proj-{uuid.uuid4().hex[:6]}"
    created = api.post("/api/keys", {"key": unique("emu-free-"), "project": project, "baseUrl": emu.url}, format="json")
    assert created.status_code == 201 and created.json()["data"]["project"] == project
    key = ApiKey.objects.get(pk=created.json()["data"]["id"])
    add_key(unique("emu-free-"), project=project)
    KeyRest.objects.create(
        project=project, model=PRO, kind="day", quota_id="PerDayQuota", until=pool.next_quota_day_start()
    )
    listed = {k["id"]: k for k in api.get("/api/keys").json()["data"]}
    assert [(r["model"], r["on"], r["why"]) for r in listed[key.pk]["rests"]] == [(PRO, "project", "PerDayQuota")]
    health = client.get("/health").json()["checks"]["keys"]
    assert health["usable_by_model"][PRO] == 0 and health["usable_by_model"][FLASH] == 2
    assert health["rests"] == [
        {"model": PRO, "on": project, "why": "PerDayQuota", "until": health["rests"][0]["until"]}
    ]
    assert {"project": project, "keys": 2, "used_today": 0, "left_today": 1000} in health["projects"]
    client.force_login(user)
    page = client.get("/keys").content.decode()
    assert f'<strong class="project-name">{project}</strong>' in page
    assert "Nano Banana Pro resting" in page and "(whole project)" in page
