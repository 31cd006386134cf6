"""Pacing against the emulator: the pool learns a project's per-minute limit from one 429 and then
admits only what fits each window; operators' limits win; a limit of 0 admits nothing; a learned
limit Google no longer holds is forgotten; admission holds across processes; booked places keep
the order requests asked in."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from conversations import pipeline
from conversations.models import Job
from keys import pacing, pool
from keys.models import KeyRest, QuotaLimit, QuotaWindow
from tests.conftest import emulator_requests, png_bytes
from tests.keys.conftest import ROOT

pytestmark = pytest.mark.django_db

FLASH, PRO = "gemini-nano-banana-2.1", "gemini-3-pro-image"
WINDOW = 2.0  # Gemini's per-minute window, shortened for the emulator and the pool alike


@pytest.fixture
def short_minute(emu: Any, settings: Any) -> Iterator[float]:
    emu.quotas.minute_seconds = settings.QUOTA_MINUTE_SECONDS = WINDOW
    settings.MAX_QUEUE_WAIT = 4 * WINDOW
    time.sleep(WINDOW - time.time() % WINDOW + 0.05)  # start at a window's beginning
    yield WINDOW
    emu.quotas.minute_seconds = 60.0


def tag() -> str:
    return uuid.uuid4().hex[:6]


def generate(user: Any, model: str = FLASH) -> Job:
    return pipeline.start(pipeline.GenerationRequest(user=user, prompt="a kite", model=model), pipeline.RunMode.INLINE)


def calls_per_window(emu: Any) -> tuple[Counter[tuple[int, int]], Counter[int]]:
    """(window, status) counts, and refused calls per window, from the emulator's log."""
    seen: Counter[tuple[int, int]] = Counter()
    for request in emulator_requests(emu):
        at = dt.datetime.fromisoformat(request["time"]).timestamp()
        seen[(int(at // WINDOW), request["status"])] += 1
    refused = Counter({window: n for (window, status), n in seen.items() if status == 429})
    return seen, refused


def test_one_429_teaches_a_projects_limit_and_then_only_what_fits_is_called(
    user: Any, add_key: Any, emu: Any, short_minute: float
) -> None:
    project = f"P{tag()}"
    for n in range(3):  # three keys of one project: 2 calls a window between them
        add_key(f"emu-rpm2-p{project}-{n}", project=project)
    jobs = [generate(user) for _ in range(7)]
    assert [job.state for job in jobs] == [Job.State.SUCCEEDED] * 7
    learned = QuotaLimit.objects.get(project=project)
    assert (learned.model, learned.period, learned.learned, learned.key_id) == (FLASH, "minute", 2, None)
    assert "learned from Google's 429 (GenerateRequestsPerMinutePerProjectPerModel" in learned.source
    seen, refused = calls_per_window(emu)
    assert sum(refused.values()) == 1  # the one that taught the limit
    assert all(n <= 2 for (_, status), n in seen.items() if status == 200)  # never more than fits


def test_an_operators_limit_wins_and_nothing_is_refused(user: Any, add_key: Any, emu: Any, short_minute: float) -> None:
    key = add_key(f"emu-rpm3-{tag()}")
    QuotaLimit.objects.create(key=key, model=FLASH, period="minute", learned=3, learned_at=timezone.now())
    QuotaLimit.objects.create(key=key, period="minute", operator=1)  # every model, one a window
    for _ in range(3):
        assert generate(user).state == Job.State.SUCCEEDED
    seen, refused = calls_per_window(emu)
    assert not refused and sorted(seen.values()) == [1, 1, 1]  # one a window, as the operator said


def test_a_limit_of_0_admits_nothing_and_the_request_goes_to_a_key_that_can_serve_it(
    user: Any, add_key: Any, emu: Any
) -> None:
    project = f"F{tag()}"
    free = add_key(f"emu-ok-p{project}-1", project=project)
    QuotaLimit.objects.create(project=project, model=PRO, period="day", operator=0)
    refused = generate(user, PRO)
    assert refused.state == Job.State.FAILED and refused.error_code == Job.ErrorCode.NO_USABLE_KEY
    assert "no quota for gemini-3-pro-image" in refused.error and refused.retry_after is None
    assert emulator_requests(emu) == []  # refused at once, without a call
    assert KeyRest.objects.get(project=project, model=PRO).kind == KeyRest.Kind.NO_QUOTA
    assert generate(user).state == Job.State.SUCCEEDED  # Flash still goes to that key
    paid = add_key(f"emu-ok-{tag()}")
    served = generate(user, PRO)
    assert served.state == Job.State.SUCCEEDED
    assert [r["key_suffix"] for r in emulator_requests(emu)][-1] == paid.masked[-4:]
    assert free.pk != paid.pk


def test_a_learned_limit_google_no_longer_holds_is_forgotten(
    user: Any, add_key: Any, emu: Any, short_minute: float, settings: Any
) -> None:
    key = add_key(f"emu-rpm3-{tag()}")  # Google allows 3 a window now
    long_ago = timezone.now() - dt.timedelta(seconds=settings.QUOTA_RELEARN_SECONDS + 1)
    QuotaLimit.objects.create(key=key, model=FLASH, period="minute", learned=1, quota_id="q", learned_at=long_ago)
    assert generate(user).state == generate(user).state == Job.State.SUCCEEDED
    limit = QuotaLimit.objects.get(key=key)
    assert limit.learned is None and limit.learned_at is None  # two accepted where it said one: forgotten
    assert not [r for r in emulator_requests(emu) if r["status"] == 429]


def test_a_fresh_learned_limit_is_enforced(add_key: Any) -> None:
    key = add_key(f"emu-ok-{tag()}")
    QuotaLimit.objects.create(key=key, model=FLASH, period="day", learned=1, quota_id="q", learned_at=timezone.now())
    first = pool.acquire(FLASH)
    assert first.slots and first.slots[0].learned is None  # enforced, not re-checked
    with pytest.raises(pool.NoUsableKey, match=r"resting for gemini-nano-banana-2\.1"):
        pool.acquire(FLASH)
    assert KeyRest.objects.get(key=key).kind == KeyRest.Kind.PACED
    assert key.__class__.objects.get(pk=key.pk).count_today == 1  # the refused pick gave its use back


def test_places_in_coming_windows_go_in_the_order_requests_ask(add_key: Any, settings: Any) -> None:
    settings.QUOTA_MINUTE_SECONDS = 60.0
    key = add_key(f"emu-ok-{tag()}")
    QuotaLimit.objects.create(key=key, model=FLASH, period="minute", operator=1)
    now_window = pool.acquire(FLASH, wait=300)
    booked = [pool.acquire(FLASH, wait=300) for _ in range(4)]
    assert now_window.not_before is None
    starts = [lease.not_before for lease in booked if lease.not_before is not None]
    assert len(starts) == 4 and starts == sorted(starts)  # first asked, first served
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(starts)] == [60.0] * 3  # one a window
    with pytest.raises(pool.NoUsableKey):  # beyond the wait: refused, with when to come back
        pool.acquire(FLASH, wait=30)


ADMIT = """
import django, sys, time
django.setup()
from keys import pacing
from keys.models import ApiKey
key = ApiKey.objects.get()
time.sleep(max(0, float(sys.argv[2]) - time.time()))  # both processes start admitting together
print(sum(pacing.admit(key.pk, key.project, "gemini-nano-banana-2.1") is not None for _ in range(int(sys.argv[1]))))
"""


def test_admission_holds_across_processes(tmp_path: Path) -> None:
    """Two processes on one SQLite file admit calls to one project's window: no more than its limit."""
    env = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    env |= {"NANOCLONE_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "nanoclone.settings"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)

    run(sys.executable, "manage.py", "migrate", "--verbosity", "0")
    setup = (
        "from keys.models import ApiKey, QuotaLimit; ApiKey.create('emu-ok-procs', project='shared');"
        "QuotaLimit.objects.create(project='shared', period='day', operator=25)"
    )
    run(sys.executable, "manage.py", "shell", "-c", setup)
    together = str(time.time() + 4)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", ADMIT, "40", together], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    admitted = [int(worker.communicate(timeout=120)[0].strip()) for worker in workers]
    assert sum(admitted) == 25 and all(n > 0 for n in admitted), admitted
    window = run(
        sys.executable,
        "manage.py",
        "shell",
        "-c",
        "from keys.models import QuotaWindow as W; print(W.objects.get().used)",
    )
    assert window.stdout.strip().splitlines()[-1] == "25"


def test_old_windows_are_pruned_by_the_daily_reset() -> None:
    old = int((timezone.now() - dt.timedelta(days=3)).timestamp() * 1000)
    QuotaWindow.objects.create(scope="key:1", model=FLASH, period="minute", start_ms=old, used=2)
    QuotaWindow.objects.create(scope="key:1", model=FLASH, period="minute", start_ms=old * 0 + int(time.time() * 1000))
    pool.reset_daily()
    assert QuotaWindow.objects.count() == 1


def test_the_period_of_googles_quota_ids() -> None:
    assert pacing.period_of("GenerateRequestsPerMinutePerProjectPerModel-FreeTier") == "minute"
    assert pacing.period_of("GenerateRequestsPerDayPerProjectPerModel") == "day"
    assert pacing.period_of("GenerateContentInputTokensPerModelPerMinute-FreeTier") == "tokens"
    assert pacing.period_of("") is None


def test_an_input_token_limit_counts_each_calls_tokens(add_key: Any) -> None:
    key = add_key(f"emu-ok-{tag()}")
    QuotaLimit.objects.create(key=key, period="tokens", operator=600)  # input tokens a minute
    assert pool.acquire(FLASH, tokens=300).slots[0].amount == 300
    pool.acquire(FLASH, tokens=300)
    with pytest.raises(pool.NoUsableKey):  # 600 of 600 used: not one more token this minute
        pool.acquire(FLASH, tokens=1)


def test_a_generation_counts_its_images_tokens_against_the_limit(
    user: Any, add_key: Any, emu: Any, short_minute: float
) -> None:
    key = add_key(f"emu-ok-{tag()}")
    QuotaLimit.objects.create(key=key, period="tokens", operator=400)  # one reference image (258) a window
    for _ in range(2):
        request = pipeline.GenerationRequest(user=user, prompt="this as a postcard", references=[png_bytes((64, 48))])
        assert pipeline.start(request, pipeline.RunMode.INLINE).state == Job.State.SUCCEEDED
    seen, refused = calls_per_window(emu)
    assert not refused and sorted(seen.values()) == [1, 1]  # one call a window: the second waited for its place
