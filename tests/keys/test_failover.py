"""What a failing key does to a request and to the key: POST /api/generate against the emulator."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from django.utils import timezone

from keys.models import ApiKey, KeyRest, quota_day
from keys.pool import next_quota_day_start
from tests.conftest import emulator_requests

pytestmark = pytest.mark.django_db


def generate(api: Any, prompt: str = "a lighthouse at dusk") -> Any:
    return api.post("/api/generate", {"prompt": prompt}, format="json")


def tried(emu: Any) -> list[tuple[str, int]]:
    """(last 4 characters of the key, status) of each call the emulator received, in order."""
    return [(r["key_suffix"], r["status"]) for r in emulator_requests(emu)]


def unique(prefix: str) -> str:
    # The emulator counts quota per key for its whole lifetime: fresh keys for every test.
    return f"{prefix}{uuid.uuid4().hex[:8]}"


# --- 429: quota spent ------------------------------------------------------------------------


def test_it_fails_over_to_the_next_key_when_one_answers_429(api: Any, add_key: Any, emu: Any) -> None:
    add_key("emu-429-aaaa")
    add_key("emu-ok-bbbb")
    response = generate(api)
    assert response.status_code == 200, response.json()
    assert tried(emu) == [("aaaa", 429), ("bbbb", 200)]


def test_a_daily_429_rests_that_model_until_the_next_quota_day_with_googles_details(api: Any, add_key: Any) -> None:
    spent = add_key("emu-429-aaaa")
    add_key("emu-ok-bbbb")
    generate(api)
    spent.refresh_from_db()
    assert spent.status == ApiKey.Status.ACTIVE  # other models still work on it
    [rest] = KeyRest.objects.filter(key=spent)
    assert (rest.model, rest.kind) == ("gemini-nano-banana-2.1", KeyRest.Kind.DAY)
    assert rest.until == next_quota_day_start()
    assert rest.quota_id == "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
    assert "retry in 38s" in rest.detail


def test_a_429_without_details_rests_that_model_for_the_configured_cooldown(
    api: Any, add_key: Any, settings: Any
) -> None:
    settings.KEY_COOLDOWN_HOURS = 2
    spent = add_key("emu-429bare-aaaa")
    add_key("emu-ok-bbbb")
    assert generate(api).status_code == 200
    [rest] = KeyRest.objects.filter(key=spent)
    assert rest.kind == KeyRest.Kind.UNKNOWN and rest.quota_id == ""
    assert dt.timedelta(hours=1, minutes=59) < rest.until - timezone.now() <= dt.timedelta(hours=2)


def test_it_does_not_try_a_resting_key_again(api: Any, add_key: Any, emu: Any) -> None:
    add_key("emu-429-aaaa")
    add_key("emu-ok-bbbb")
    generate(api)
    emu.clear()
    assert generate(api).status_code == 200
    assert generate(api).status_code == 200
    assert tried(emu) == [("bbbb", 200), ("bbbb", 200)]


def test_it_moves_on_once_a_key_has_spent_its_quota(api: Any, add_key: Any, emu: Any) -> None:
    quota = add_key(unique("emu-quota2-"))
    add_key("emu-ok-bbbb")
    statuses = [generate(api, f"picture {n}").status_code for n in range(6)]
    q = quota.masked[-4:]
    assert statuses == [200] * 6
    assert tried(emu) == [
        (q, 200),
        ("bbbb", 200),
        (q, 200),
        ("bbbb", 200),
        (q, 429),
        ("bbbb", 200),
        ("bbbb", 200),
    ]
    assert KeyRest.objects.get(key=quota).kind == KeyRest.Kind.DAY


# --- 400 API_KEY_INVALID / 403 PERMISSION_DENIED ---------------------------------------------


def test_it_sets_aside_an_invalid_key_with_the_reason_and_fails_over(api: Any, add_key: Any, emu: Any) -> None:
    bad = add_key("emu-invalid-aaaa")
    add_key("emu-ok-bbbb")
    assert generate(api).status_code == 200
    assert tried(emu) == [("aaaa", 400), ("bbbb", 200)]
    bad.refresh_from_db()
    assert bad.invalid is True
    assert "API key not valid" in bad.invalid_reason
    assert bad.status == ApiKey.Status.INVALID


def test_it_sets_aside_a_denied_key_with_the_reason_and_fails_over(api: Any, add_key: Any, emu: Any) -> None:
    denied = add_key("emu-denied-aaaa")
    add_key("emu-ok-bbbb")
    assert generate(api).status_code == 200
    assert tried(emu) == [("aaaa", 403), ("bbbb", 200)]
    denied.refresh_from_db()
    assert denied.invalid is True
    assert "Google has suspended this key's project (CONSUMER_SUSPENDED)" in denied.invalid_reason


def test_it_skips_an_invalid_key_until_it_is_re_enabled(api: Any, add_key: Any, emu: Any) -> None:
    bad = add_key("emu-invalid-aaaa")
    add_key("emu-ok-bbbb")
    generate(api)
    emu.clear()
    generate(api)
    generate(api)
    assert tried(emu) == [("bbbb", 200), ("bbbb", 200)]
    ApiKey.objects.filter(pk=bad.pk).update(invalid=False, invalid_reason="")
    emu.clear()
    generate(api)
    assert tried(emu) == [("aaaa", 400), ("bbbb", 200)]


# --- 5xx and timeouts --------------------------------------------------------------------------


def test_it_retries_a_500_on_another_key_without_holding_it_against_the_key(api: Any, add_key: Any, emu: Any) -> None:
    flaky = add_key("emu-500-aaaa")
    add_key("emu-ok-bbbb")
    assert generate(api).status_code == 200
    assert tried(emu) == [("aaaa", 500), ("bbbb", 200)]
    flaky.refresh_from_db()
    assert flaky.status == ApiKey.Status.ACTIVE
    assert flaky.last_error.startswith("500 INTERNAL")


def test_it_gives_up_with_502_after_the_configured_number_of_retries(
    api: Any, add_key: Any, emu: Any, settings: Any
) -> None:
    settings.UPSTREAM_RETRIES = 3
    add_key("emu-500-aaaa")
    add_key("emu-500-bbbb")
    response = generate(api)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"
    assert "Gemini is not answering properly" in response.json()["error"]["message"]
    # One first attempt and three retries, alternating between the two keys.
    assert tried(emu) == [("aaaa", 500), ("bbbb", 500), ("aaaa", 500), ("bbbb", 500)]


def test_it_backs_off_longer_before_each_retry(api: Any, add_key: Any, emu: Any, settings: Any) -> None:
    settings.UPSTREAM_BACKOFF_SECONDS = 0.2
    add_key("emu-500-aaaa")
    assert generate(api).status_code == 502
    times = [dt.datetime.fromisoformat(r["time"]) for r in emulator_requests(emu)]
    assert len(times) == 3  # UPSTREAM_RETRIES = 2
    first_pause, second_pause = times[1] - times[0], times[2] - times[1]
    # 0.2 s then 0.4 s, each with +-20 % jitter.
    assert first_pause >= dt.timedelta(seconds=0.16)
    assert second_pause >= dt.timedelta(seconds=0.32)


def test_it_fails_over_when_a_key_times_out(api: Any, add_key: Any, emu: Any, settings: Any) -> None:
    settings.GEMINI_TIMEOUT_SECONDS = 1  # ample for the good key even on a busy machine
    slow = add_key(unique("emu-slow3000-"))
    add_key("emu-ok-bbbb")
    assert generate(api).status_code == 200
    assert [suffix for suffix, _ in tried(emu)][-1] == "bbbb"
    slow.refresh_from_db()
    assert "timed out" in slow.last_error.lower()
    assert slow.status == ApiKey.Status.ACTIVE


def test_it_answers_502_when_every_call_times_out(api: Any, add_key: Any, settings: Any) -> None:
    settings.GEMINI_TIMEOUT_SECONDS = 0.2
    settings.UPSTREAM_RETRIES = 1
    add_key(unique("emu-slow1000-"))
    response = generate(api)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"


def test_it_applies_a_changed_timeout_to_a_key_already_used(api: Any, add_key: Any, settings: Any) -> None:
    settings.UPSTREAM_RETRIES = 0
    add_key(unique("emu-slow400-"))
    assert generate(api).status_code == 200  # the default timeout is two minutes
    settings.GEMINI_TIMEOUT_SECONDS = 0.1
    assert generate(api).status_code == 502


# --- no usable key: 503 saying why -------------------------------------------------------------


def test_it_answers_503_when_no_key_is_configured(api: Any) -> None:
    response = generate(api)
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "no_usable_key"
    assert error["message"].startswith("No Gemini API key is configured.")
    assert "Retry-After" not in response.headers


def test_it_answers_503_until_when_every_key_rests_for_the_model(api: Any, add_key: Any) -> None:
    until = timezone.now() + dt.timedelta(hours=2)
    key = add_key("emu-ok-aaaa")
    KeyRest.objects.create(key=key, model="gemini-nano-banana-2.1", kind="day", quota_id="PerDayQuota", until=until)
    response = generate(api)
    assert response.status_code == 503
    message = response.json()["error"]["message"]
    assert message == (
        f"No usable Gemini key: 1 resting for gemini-nano-banana-2.1 (PerDayQuota) until {until:%Y-%m-%d %H:%M:%S} UTC."
    )
    assert 7190 <= int(response.headers["Retry-After"]) <= 7201


def test_it_answers_503_when_every_key_is_invalid(api: Any, add_key: Any) -> None:
    add_key("emu-invalid-aaaa")
    add_key("emu-denied-bbbb")
    response = generate(api)
    assert response.status_code == 503
    assert response.json()["error"]["message"] == (
        "All 2 Gemini keys are invalid (400 INVALID_ARGUMENT: API key not valid. Please pass a valid API key.); "
        "fix or replace them."
    )
    assert "Retry-After" not in response.headers


def test_it_answers_503_until_the_next_quota_day_when_every_key_reached_its_daily_limit(api: Any, add_key: Any) -> None:
    add_key("emu-ok-aaaa", daily_limit=3, count_day=quota_day(), count_today=3)
    response = generate(api)
    assert response.status_code == 503
    message = response.json()["error"]["message"]
    reset = next_quota_day_start()
    assert "1 at their daily limit until midnight America/Los_Angeles" in message
    assert f"{reset.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC" in message
    expected = (reset - timezone.now()).total_seconds()
    assert abs(int(response.headers["Retry-After"]) - expected) <= 5


def test_it_rests_a_key_after_five_upstream_errors_in_a_row_and_says_so(api: Any, add_key: Any) -> None:
    add_key("emu-500-flaky")
    # Three calls (UPSTREAM_RETRIES=2) fail the first request; the second request's second
    # call is the fifth error in a row, which rests the key, so nothing is left to serve it.
    assert api.post("/api/generate", {"prompt": "a fox"}, format="json").status_code == 502
    response = api.post("/api/generate", {"prompt": "a fox"}, format="json")
    assert response.status_code == 503
    message = response.json()["error"]["message"]
    assert "1 resting after repeated upstream errors until" in message and "429" not in message
    assert 1 <= int(response["Retry-After"]) <= 300
