"""The key pool's selection and accounting: which key serves the next request, atomically."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from keys import pool
from keys.models import ApiKey, quota_day
from tests.keys.conftest import SharedDatabase


@pytest.mark.django_db
def test_it_keeps_a_new_key_encrypted_masked_and_ready_with_the_default_limit() -> None:
    key = ApiKey.create("  AIzaSyExample0000000000000000000x9Qk  ", label="team")
    key.refresh_from_db()
    assert key.label == "team"
    assert key.masked == "AIza…x9Qk"
    assert "AIzaSyExample" not in key.secret_encrypted
    assert key.secret == "AIzaSyExample0000000000000000000x9Qk"
    assert key.base_url == ""
    assert key.daily_limit == 500
    assert (key.enabled, key.invalid, key.invalid_reason) == (True, False, "")
    assert (key.used_today, key.total_count, key.exhausted_until, key.last_used_at, key.last_error) == (
        0,
        0,
        None,
        None,
        "",
    )
    assert key.status == ApiKey.Status.ACTIVE


@pytest.mark.django_db
def test_it_counts_each_use_for_today_in_total_and_in_the_daily_history() -> None:
    key = ApiKey.create("emu-ok-count")
    pool.acquire()
    pool.acquire()
    key.refresh_from_db()
    assert (key.used_today, key.total_count, key.count_day) == (2, 2, quota_day())
    assert key.last_used_at is not None


@pytest.mark.django_db
def test_it_spreads_requests_least_used_first_in_rotation() -> None:
    keys = [ApiKey.create(f"emu-ok-rotate-{n}") for n in range(3)]
    handed_out = [pool.acquire().key_id for _ in range(6)]
    ids = [key.pk for key in keys]
    assert handed_out == ids + ids


@pytest.mark.django_db
def test_it_prefers_the_key_used_least_today() -> None:
    busy = ApiKey.create("emu-ok-busy", count_day=quota_day(), count_today=7)
    quiet = ApiKey.create("emu-ok-quiet", count_day=quota_day(), count_today=3)
    assert [pool.acquire().key_id for _ in range(5)] == [quiet.pk] * 4 + [busy.pk]


@pytest.mark.django_db
def test_it_stops_handing_out_a_key_at_its_daily_limit() -> None:
    ApiKey.create("emu-ok-limited", daily_limit=2)
    pool.acquire()
    pool.acquire()
    with pytest.raises(pool.NoUsableKey, match="daily limit"):
        pool.acquire()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "fields",
    [{"enabled": False}, {"invalid": True, "invalid_reason": "400 API key not valid"}, {"daily_limit": 0}],
    ids=["disabled", "invalid", "zero-limit"],
)
def test_it_never_hands_out_an_unusable_key(fields: dict[str, Any]) -> None:
    ApiKey.create("emu-ok-unusable", **fields)
    usable = ApiKey.create("emu-ok-usable")
    assert {pool.acquire().key_id for _ in range(3)} == {usable.pk}


@pytest.mark.django_db
def test_it_uses_an_invalid_key_again_once_an_operator_re_enables_it() -> None:
    key = ApiKey.create("emu-ok-fixed", invalid=True, invalid_reason="403 PERMISSION_DENIED")
    with pytest.raises(pool.NoUsableKey, match="The only Gemini key is invalid"):
        pool.acquire()
    ApiKey.objects.filter(pk=key.pk).update(invalid=False, invalid_reason="")
    assert pool.acquire().key_id == key.pk


@pytest.mark.django_db
def test_it_never_shows_the_secret_in_a_lease_repr() -> None:
    ApiKey.create("emu-ok-repr-secret-1234567890")
    lease = pool.acquire()
    assert "repr-secret" not in repr(lease) and "repr-secret" not in str(lease)


def _assert_pool_drained_exactly(limits: list[int], drained: Any) -> None:
    """Every use handed out once and no key past its limit: the sum of limits, not one more."""
    assert [error for worker in drained["workers"] for error in worker["errors"]] == []
    handed_out: Counter[str] = Counter()
    for worker in drained["workers"]:
        handed_out.update(worker["taken"])
    assert sum(handed_out.values()) == sum(limits)
    keys = drained["keys"]
    assert sorted(key["limit"] for key in keys.values()) == sorted(limits)
    for key_id, key in keys.items():
        assert handed_out[key_id] == key["limit"]
        assert key["used_today"] == key["total"] == key["limit"]


# On PostgreSQL the workers commit into the test database: the test's end must flush it.
@pytest.mark.django_db(transaction=True)
def test_it_never_exceeds_a_daily_limit_under_many_threads(shared_db: SharedDatabase) -> None:
    limits = [40, 25, 15]
    _assert_pool_drained_exactly(limits, shared_db.drain_pool(limits, processes=1, threads=8))


# On PostgreSQL the workers commit into the test database: the test's end must flush it.
@pytest.mark.django_db(transaction=True)
def test_it_never_exceeds_a_daily_limit_under_many_processes(shared_db: SharedDatabase) -> None:
    limits = [40, 25, 15]
    _assert_pool_drained_exactly(limits, shared_db.drain_pool(limits, processes=4, threads=2))
