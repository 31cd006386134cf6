"""The key pool: which Gemini key serves the next request, and what a failure does to a key.

Rules (DESIGN.md): usable = enabled, not invalid, not cooling down, under its daily limit
for the current quota day. Least used today first, ties to the least recently used.
Selection and the count increment are one conditional UPDATE, so concurrent workers can
never push a key past its limit.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Q, QuerySet, Value, When
from django.utils import timezone

from keys.models import ApiKey, KeyUsageDay, quota_day

log = logging.getLogger(__name__)

# After this many upstream errors in a row a key rests briefly: it is probably the key's
# project, not Gemini, that is failing.
FAILURES_BEFORE_REST = 5
REST_AFTER_FAILURES = dt.timedelta(minutes=5)
REST_DETAIL = f"{FAILURES_BEFORE_REST} upstream errors in a row"


class NoUsableKey(Exception):
    def __init__(self, message: str, retry_after: dt.datetime | None = None):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    @property
    def retry_after_seconds(self) -> int | None:
        if self.retry_after is None:
            return None
        return max(1, int((self.retry_after - timezone.now()).total_seconds()) + 1)


class GeminiError(Exception):
    """What a Gemini call can end in, sorted by what it means for the key that made it."""


class KeyExhausted(GeminiError):
    """429: this key's quota is spent."""


class KeyRejected(GeminiError):
    """400 API_KEY_INVALID / 401 / 403: this key will not work until an operator acts."""


class UpstreamUnavailable(GeminiError):
    """5xx, timeout or connection error: worth retrying, maybe on another key."""


class RequestRejected(GeminiError):
    """Gemini refused the request itself (400 other than a bad key): no key would help."""


class Refused(GeminiError):
    """Gemini answered but produced no image: blocked prompt, image safety, text only."""

    def __init__(self, code: str, message: str, text: str = ""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.text = text


@dataclass(frozen=True)
class Lease:
    """One acquired use of a key: the decrypted secret never leaves this object."""

    key_id: int
    masked: str
    base_url: str
    secret: str
    failures_before: int = 0  # the key's consecutive upstream failures when it was leased

    def __repr__(self) -> str:  # keep secrets out of tracebacks and logs
        return f"Lease(key_id={self.key_id}, masked={self.masked!r})"


def _usable(today: dt.date, now: dt.datetime) -> Q:
    under_limit = Q(count_day=today, count_today__lt=F("daily_limit")) | ~Q(count_day=today) | Q(count_day__isnull=True)
    not_resting = Q(exhausted_until__isnull=True) | Q(exhausted_until__lte=now)
    return Q(enabled=True, invalid=False) & not_resting & under_limit & Q(daily_limit__gt=0)


def acquire(exclude: Collection[int] = ()) -> Lease:
    """Take one use of the best usable key, or raise NoUsableKey saying why there is none."""
    for _ in range(20):
        today, now = quota_day(), timezone.now()
        usable = ApiKey.objects.filter(_usable(today, now)).exclude(pk__in=exclude)
        used_today = Case(When(count_day=today, then=F("count_today")), default=Value(0))
        candidate = (
            usable.annotate(used=used_today)
            .order_by("used", F("last_used_at").asc(nulls_first=True), "id")
            .only("masked", "base_url", "secret_encrypted", "consecutive_failures")
            .first()
        )
        if candidate is None:
            raise explain_no_usable_key(exclude)
        # The same conditions again in the UPDATE: if another worker took the last use of
        # this key between our SELECT and here, no row matches and we pick again.
        claimed = ApiKey.objects.filter(_usable(today, now), pk=candidate.pk).update(
            count_today=Case(When(count_day=today, then=F("count_today") + 1), default=Value(1)),
            count_day=today,
            total_count=F("total_count") + 1,
            last_used_at=now,
        )
        if claimed:
            _count_usage(candidate.pk, today)
            return Lease(
                candidate.pk, candidate.masked, candidate.base_url, candidate.secret, candidate.consecutive_failures
            )
    raise NoUsableKey("The key pool is too busy right now; try again in a moment.")


def _count_usage(key_id: int, day: dt.date) -> None:
    if KeyUsageDay.objects.filter(key_id=key_id, day=day).update(count=F("count") + 1):
        return
    try:
        with transaction.atomic():
            KeyUsageDay.objects.create(key_id=key_id, day=day, count=1)
    except IntegrityError:  # another worker created today's row first
        KeyUsageDay.objects.filter(key_id=key_id, day=day).update(count=F("count") + 1)


def next_quota_day_start(now: dt.datetime | None = None) -> dt.datetime:
    tz = ZoneInfo(settings.QUOTA_TIMEZONE)
    local = (now or timezone.now()).astimezone(tz)
    return dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), tzinfo=tz)


def explain_no_usable_key(exclude: Collection[int] = ()) -> NoUsableKey:
    keys = list(ApiKey.objects.all())
    if not keys:
        return NoUsableKey("No Gemini API key is configured. Add one on the keys page or with POST /api/keys.")
    now = timezone.now()
    reasons: list[str] = []
    times: list[dt.datetime] = []
    by_status: dict[str, list[ApiKey]] = {}
    for key in keys:
        by_status.setdefault(key.status, []).append(key)
    cooling = by_status.get(ApiKey.Status.EXHAUSTED, [])
    for group, label in (
        ([k for k in cooling if k.exhausted_detail != REST_DETAIL], "exhausted (429)"),
        ([k for k in cooling if k.exhausted_detail == REST_DETAIL], "resting after repeated upstream errors"),
    ):
        if group:
            until = min(k.exhausted_until for k in group if k.exhausted_until)
            times.append(until)
            reasons.append(f"{len(group)} {label} until {until:%Y-%m-%d %H:%M} UTC")
    if limited := by_status.get(ApiKey.Status.LIMIT_REACHED):
        reset = next_quota_day_start(now)
        times.append(reset)
        reasons.append(
            f"{len(limited)} at their daily limit until midnight {settings.QUOTA_TIMEZONE} "
            f"({reset.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC)"
        )
    if invalid := by_status.get(ApiKey.Status.INVALID):
        reasons.append(f"{len(invalid)} invalid ({invalid[0].invalid_reason})")
    if disabled := by_status.get(ApiKey.Status.DISABLED):
        reasons.append(f"{len(disabled)} disabled")
    if failed := [k for k in by_status.get(ApiKey.Status.ACTIVE, []) if k.pk in exclude]:
        reasons.append(f"{len(failed)} failed for this request ({failed[0].last_error[:120]})")
    if len(reasons) == 1 and invalid and len(invalid) == len(keys):
        summary = f"All {len(keys)} Gemini keys are invalid" if len(keys) > 1 else "The only Gemini key is invalid"
        return NoUsableKey(f"{summary} ({invalid[0].invalid_reason}); fix or replace them.")
    return NoUsableKey(f"No usable Gemini key: {', '.join(reasons)}.", min(times) if times and not failed else None)


def _error_fields(error: str) -> dict[str, object]:
    return {"last_error": error[:1000], "last_error_at": timezone.now()}


def report(lease: Lease, error: GeminiError | None = None) -> None:
    """The one failure policy: what the outcome of a call made with `lease` does to its key.

    None, RequestRejected and Refused mean the key worked (Gemini answered); the request's own
    fate (fail it, try the next key, back off) is the caller's to decide.
    """
    if isinstance(error, KeyExhausted):
        _rest(lease, str(error))
    elif isinstance(error, KeyRejected):
        _set_invalid(lease, str(error))
    elif isinstance(error, UpstreamUnavailable):
        _count_failure(lease, str(error))
    elif lease.failures_before:  # only a key with a failure streak needs a write on success
        ApiKey.objects.filter(pk=lease.key_id).update(consecutive_failures=0)


def _rest(lease: Lease, detail: str) -> None:
    """429: Gemini's daily quota is spent; retrying would only burn requests, so rest the key."""
    until = timezone.now() + dt.timedelta(hours=settings.KEY_COOLDOWN_HOURS)
    ApiKey.objects.filter(pk=lease.key_id).update(
        exhausted_until=until, exhausted_detail=detail[:300], **_error_fields(f"429 {detail}")
    )
    log.warning("Key %s exhausted until %s (%s)", lease.masked, until.isoformat(), detail)


def _set_invalid(lease: Lease, reason: str) -> None:
    ApiKey.objects.filter(pk=lease.key_id).update(invalid=True, invalid_reason=reason[:300], **_error_fields(reason))
    log.warning("Key %s set aside as invalid: %s", lease.masked, reason)


def _count_failure(lease: Lease, error: str) -> None:
    ApiKey.objects.filter(pk=lease.key_id).update(
        consecutive_failures=F("consecutive_failures") + 1, **_error_fields(error)
    )
    ApiKey.objects.filter(pk=lease.key_id, consecutive_failures__gte=FAILURES_BEFORE_REST).update(
        exhausted_until=timezone.now() + REST_AFTER_FAILURES,
        exhausted_detail=REST_DETAIL,
        consecutive_failures=0,
    )


def usable_keys() -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(_usable(quota_day(), timezone.now()))


def reset_daily() -> str:
    """The daily reset: counters of past quota days to zero, expired cooldowns cleared."""
    today, now = quota_day(), timezone.now()
    counters = ApiKey.objects.exclude(count_day=today).exclude(count_today=0).update(count_today=0, count_day=today)
    cooldowns = ApiKey.objects.filter(exhausted_until__lte=now).update(exhausted_until=None, exhausted_detail="")
    summary = (
        f"Key pool reset for quota day {today}: {counters} counter(s) zeroed, "
        f"{cooldowns} cooldown(s) cleared, {usable_keys().count()} key(s) usable."
    )
    log.info(summary)
    return summary
