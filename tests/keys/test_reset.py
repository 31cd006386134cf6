"""The quota day (midnight Pacific time) and the daily reset: the schedule and `manage.py reset_keys`."""

from __future__ import annotations

import datetime as dt
import io
import logging
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from keys import pool
from keys.models import ApiKey, quota_day
from tests.conftest import replay_migrations


def test_it_starts_the_winter_quota_day_at_08_00_utc() -> None:
    assert quota_day(dt.datetime(2026, 1, 15, 7, 59, 59, tzinfo=dt.UTC)) == dt.date(2026, 1, 14)
    assert quota_day(dt.datetime(2026, 1, 15, 8, 0, tzinfo=dt.UTC)) == dt.date(2026, 1, 15)


def test_it_starts_the_summer_quota_day_at_07_00_utc() -> None:
    assert quota_day(dt.datetime(2026, 7, 15, 6, 59, 59, tzinfo=dt.UTC)) == dt.date(2026, 7, 14)
    assert quota_day(dt.datetime(2026, 7, 15, 7, 0, tzinfo=dt.UTC)) == dt.date(2026, 7, 15)


def test_it_follows_the_configured_quota_time_zone(settings: Any) -> None:
    settings.QUOTA_TIMEZONE = "UTC"
    assert quota_day(dt.datetime(2026, 1, 15, 0, 0, tzinfo=dt.UTC)) == dt.date(2026, 1, 15)


@pytest.mark.django_db
def test_it_treats_a_full_counter_from_yesterday_as_zero_without_any_reset() -> None:
    yesterday = quota_day() - dt.timedelta(days=1)
    key = ApiKey.create("emu-ok-yesterday", daily_limit=5, count_day=yesterday, count_today=5, total_count=5)
    assert (key.used_today, key.status) == (0, ApiKey.Status.ACTIVE)
    assert pool.acquire().key_id == key.pk
    key.refresh_from_db()
    assert (key.count_day, key.count_today, key.total_count) == (quota_day(), 1, 6)


def test_it_reopens_full_keys_at_pacific_midnight() -> None:
    start = pool.next_quota_day_start(dt.datetime(2026, 1, 15, 7, 59, tzinfo=dt.UTC))
    assert start == dt.datetime(2026, 1, 15, 8, 0, tzinfo=dt.UTC)


@pytest.mark.django_db
def test_it_schedules_the_daily_reset_with_the_migrations() -> None:
    replay_migrations("keys.migrations.0002_daily_reset_schedule")
    schedule = Schedule.objects.get(func="keys.pool.reset_daily")
    assert schedule.schedule_type == Schedule.DAILY
    assert schedule.repeats == -1
    assert schedule.next_run is not None and schedule.next_run > timezone.now()
    # Just after midnight Pacific time, when Gemini's own quota day turns over.
    next_run_pacific = timezone.localtime(schedule.next_run, pool.ZoneInfo("America/Los_Angeles"))
    assert (next_run_pacific.hour, next_run_pacific.minute) == (0, 1)


@pytest.mark.django_db
def test_it_resets_counters_and_expired_cooldowns_with_reset_keys() -> None:
    now = timezone.now()
    yesterday = quota_day() - dt.timedelta(days=1)
    stale = ApiKey.create("emu-ok-stale", count_day=yesterday, count_today=40, total_count=90)
    rested = ApiKey.create("emu-ok-rested", exhausted_until=now - dt.timedelta(minutes=1), exhausted_detail="429")
    resting = ApiKey.create("emu-ok-resting", exhausted_until=now + dt.timedelta(hours=3), exhausted_detail="429")
    out = io.StringIO()
    call_command("reset_keys", stdout=out)
    assert out.getvalue().strip() == (
        f"Key pool reset for quota day {quota_day()}: 1 counter(s) zeroed, 1 cooldown(s) cleared, 2 key(s) usable."
    )
    stale.refresh_from_db()
    rested.refresh_from_db()
    resting.refresh_from_db()
    assert (stale.count_today, stale.count_day, stale.total_count) == (0, quota_day(), 90)
    assert (rested.exhausted_until, rested.exhausted_detail) == (None, "")
    assert resting.status == ApiKey.Status.EXHAUSTED


@pytest.mark.django_db
def test_it_leaves_todays_counters_alone_on_reset() -> None:
    key = ApiKey.create("emu-ok-today", count_day=quota_day(), count_today=7)
    call_command("reset_keys", stdout=io.StringIO())
    key.refresh_from_db()
    assert key.used_today == 7


@pytest.mark.django_db
def test_it_logs_the_reset_summary(caplog: pytest.LogCaptureFixture) -> None:
    ApiKey.create("emu-ok-logged")
    with caplog.at_level(logging.INFO, logger="keys.pool"):
        summary = pool.reset_daily()
    assert summary in caplog.messages
    assert summary.endswith("1 key(s) usable.")
