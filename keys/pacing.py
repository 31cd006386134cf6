"""Pacing: a call goes to a key only when it fits what the key's project (or the key) may spend.

Gemini's quotas belong to a project, per model, by the minute and by the day. The pool learns
them from a 429's quotaValue and quotaId (learn), or an operator sets them (QuotaLimit.operator,
which wins). Each limit counts the calls it admitted in its current window (QuotaWindow), in
the database, so every process and host shares one count: admitting is one conditional UPDATE.

A window that fills rests the model on that scope (KeyRest kind "paced") until the window ends,
so the pool's one-statement selection skips it. A request that finds every window full books a
place in a coming window instead (keys.pool's _book): places go in the order requests ask, which
is the queue's order, and nobody wakes to race for a window that holds two.

A learned limit is trusted for QUOTA_RELEARN_SECONDS (a per-day one: the quota day it was learned
in). Then it is counted but not enforced for a while: if Google accepts more calls in a window
than it allowed, the plan was upgraded and the limit is forgotten; a 429 learns it again.
An input-tokens-per-minute limit counts each call's estimated input tokens (gemini.input_tokens).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from keys.cached import CachedTable
from keys.models import KeyRest, QuotaLimit, QuotaWindow, scope_of

log = logging.getLogger(__name__)

Period = QuotaLimit.Period
ADMITTED = (Period.MINUTE, Period.DAY, Period.TOKENS)  # the online calls' windows
SETTABLE = (*ADMITTED, Period.BATCH_TOKENS)  # what an operator may set


@dataclass(frozen=True)
class Slot:
    """A call's place in one limit's window."""

    limit_id: int
    scope: str
    model: str
    period: str
    start_ms: int
    end: dt.datetime
    learned: int | None  # a learned limit being re-checked (not enforced): forgotten if Google accepts more
    amount: int = 1  # what the call counts there: one request, or its input tokens


@dataclass(frozen=True)
class _Rule:
    row: QuotaLimit
    enforced: int | None  # None: counted only (a learned limit due for a re-check)


def period_of(quota_id: str) -> str | None:
    """The period of Google's quota id, e.g. GenerateRequestsPerMinutePerProjectPerModel-FreeTier."""
    if "Enqueued" in quota_id:  # the Batch API's: tokens of the batches not finished yet
        return Period.BATCH_TOKENS
    if "PerDay" in quota_id:
        return Period.DAY
    if "PerMinute" in quota_id:
        return Period.TOKENS if "Token" in quota_id else Period.MINUTE
    return None


def window(period: str, at: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The window of `period` holding `at`: a quota day (midnight Pacific), or a minute of
    QUOTA_MINUTE_SECONDS counted from the epoch."""
    if period == Period.DAY:  # requests and tokens per minute count by the minute
        tz = ZoneInfo(settings.QUOTA_TIMEZONE)
        day = at.astimezone(tz).date()
        return (
            dt.datetime.combine(day, dt.time(), tzinfo=tz),
            dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=tz),
        )
    length = settings.QUOTA_MINUTE_SECONDS
    start = math.floor(at.timestamp() / length) * length
    return dt.datetime.fromtimestamp(start, dt.UTC), dt.datetime.fromtimestamp(start + length, dt.UTC)


def _scope(row: QuotaLimit) -> str:
    return f"project:{row.project}" if row.project else f"key:{row.key_id}"


# Every limit, read whole and kept per process for a second: a call with no limit on its key pays no
# query. A limit learned or set in this process counts at once; other processes see it within that
# second.
_limits: CachedTable[list[QuotaLimit]] = CachedTable(
    QuotaLimit, lambda: list(QuotaLimit.objects.filter(period__in=SETTABLE)), seconds=1.0
)


def _rules(key_id: int, project: str, model: str, now: dt.datetime) -> list[_Rule]:
    """The limits on this key's calls to `model`: per scope (the key, its project) and period, the
    operator's for the model, else the operator's for every model, else the learned one."""
    best: dict[tuple[str, str], tuple[int, _Rule]] = {}
    for row in _limits.get():
        if row.model not in (model, "") or not (row.key_id == key_id or (project and row.project == project)):
            continue
        if row.operator is not None:
            rank, rule = (0 if row.model else 1), _Rule(row, row.operator)
        elif row.learned is not None and row.learned_at is not None:
            rank, rule = 2, _Rule(row, row.learned if _trusted(row, now) else None)
        else:
            continue
        slot = (_scope(row), row.period)
        if slot not in best or rank < best[slot][0]:
            best[slot] = (rank, rule)
    return [rule for _, rule in best.values()]


def batch_token_limits(key_id: int, project: str, model: str) -> list[tuple[str, int]]:
    """(scope, limit) of the input tokens this key's batches of `model` may have enqueued at once,
    on the key and on its project: Google counts the batches not finished yet against it."""
    return [
        (_scope(rule.row), limit)
        for rule in _rules(key_id, project, model, timezone.now())
        if rule.row.period == Period.BATCH_TOKENS and (limit := rule.enforced) is not None
    ]


def _trusted(row: QuotaLimit, now: dt.datetime) -> bool:
    assert row.learned_at is not None
    if row.period == Period.DAY:  # trusted for the quota day it was learned in
        return window(Period.DAY, row.learned_at)[0] == window(Period.DAY, now)[0]
    return (now - row.learned_at).total_seconds() < settings.QUOTA_RELEARN_SECONDS


def admit(
    key_id: int, project: str, model: str, at: dt.datetime | None = None, tokens: int = 0
) -> tuple[Slot, ...] | None:
    """Take a place for one call of this key to `model`, of `tokens` input tokens, in every limit's
    window holding `at` (now), or None when one of them has no room (then none is taken, and that
    scope rests until the window ends)."""
    now = timezone.now()
    at = at or now
    slots: list[Slot] = []
    for rule in _rules(key_id, project, model, now):
        row = rule.row
        if row.period not in ADMITTED:  # a batch quota: pipeline.batches packs within it
            continue
        amount = tokens if row.period == Period.TOKENS else 1
        if amount == 0:  # a call whose tokens aren't known (a key's test) isn't counted there
            continue
        start, end = window(row.period, at)
        checking = row.learned if rule.enforced is None else None
        slot = Slot(row.pk, _scope(row), model, row.period, int(start.timestamp() * 1000), end, checking, amount)
        used = _take(slot, rule.enforced)
        if used is None:
            for taken in slots:
                give_back(taken)
            _rest(row, model, end, f"{rule.enforced} {row.get_period_display()}, {row.source}")
            return None
        slots.append(slot)
        if rule.enforced is not None and used >= rule.enforced:  # full now: skip it until it ends
            _rest(row, model, end, f"{rule.enforced} {row.get_period_display()}, {row.source}")
    return tuple(slots)


def _take(slot: Slot, limit: int | None) -> int | None:
    """Count the call's amount in the slot's window unless that would pass `limit`; the count after,
    or None."""
    if limit is not None and slot.amount > limit:
        return None
    window_of = QuotaWindow.objects.filter(
        scope=slot.scope, model=slot.model, period=slot.period, start_ms=slot.start_ms
    )
    for _ in range(3):
        room = window_of if limit is None else window_of.filter(used__lte=limit - slot.amount)
        if room.update(used=F("used") + slot.amount):
            return window_of.values_list("used", flat=True).first()
        if window_of.exists():
            return None  # full
        try:
            with transaction.atomic():
                QuotaWindow.objects.create(
                    scope=slot.scope, model=slot.model, period=slot.period, start_ms=slot.start_ms, used=slot.amount
                )
            return slot.amount
        except IntegrityError:
            continue  # another process opened the window at the same moment
    return None


def give_back(slot: Slot) -> None:
    QuotaWindow.objects.filter(
        scope=slot.scope, model=slot.model, period=slot.period, start_ms=slot.start_ms, used__gte=slot.amount
    ).update(used=F("used") - slot.amount)


def _rest(row: QuotaLimit, model: str, until: dt.datetime, why: str) -> None:
    """The model rests on the limit's scope until its window ends, unless it rests longer already."""
    scope = scope_of(row.key_id, row.project)
    kind = KeyRest.Kind.NO_QUOTA if why.startswith("0 ") else KeyRest.Kind.PACED
    fields = {"kind": kind, "quota_id": row.quota_id, "until": until, "detail": f"limit {why}"[:300]}
    for _ in range(3):
        if KeyRest.objects.filter(**scope, model=model).exists():
            KeyRest.objects.filter(**scope, model=model, until__lt=until).update(**fields, created_at=timezone.now())
            return
        try:
            with transaction.atomic():
                KeyRest.objects.create(**scope, model=model, **fields)
            log.info("%s is paced on %s until %s (%s)", model, row.scope_label, until.isoformat(), why)
            return
        except IntegrityError:
            continue


def learn(key_id: int, project: str, model: str, quota_id: str, limit: int | None) -> None:
    """A 429 named the quota and its value: keep it as the scope's learned limit. The 429's own rest
    (its retryDelay) covers the rest of Google's window, whose start the pool can't know."""
    period = period_of(quota_id)
    if period is None or limit is None or not model:
        return
    now = timezone.now()
    scope = scope_of(key_id, project)
    for _ in range(3):
        try:
            with transaction.atomic():
                QuotaLimit.objects.update_or_create(
                    **scope,
                    model=model,
                    period=period,
                    defaults={"learned": limit, "quota_id": quota_id[:120], "learned_at": now},
                )
            return
        except IntegrityError:
            continue


def accepted(slots: tuple[Slot, ...]) -> None:
    """Google accepted a call: where a learned limit is being re-checked, count it, and forget the
    limit once Google has accepted more than it allowed in one window."""
    for slot in slots:
        if slot.learned is None:
            continue
        window_of = QuotaWindow.objects.filter(
            scope=slot.scope, model=slot.model, period=slot.period, start_ms=slot.start_ms
        )
        window_of.update(accepted=F("accepted") + slot.amount)
        if window_of.filter(accepted__gt=slot.learned).exists():
            forgotten = QuotaLimit.objects.filter(pk=slot.limit_id, learned=slot.learned).update(
                learned=None, quota_id="", learned_at=None
            )
            if forgotten:
                _limits.forget()
                log.warning(
                    "Google accepted more than %s %s for %s on %s: the learned limit is forgotten",
                    slot.learned,
                    Period(slot.period).label,
                    slot.model,
                    slot.scope,
                )


def prune(now: dt.datetime | None = None) -> int:
    """Delete windows that ended over a day ago (the daily reset runs this)."""
    cutoff = ((now or timezone.now()) - dt.timedelta(days=2)).timestamp() * 1000
    return QuotaWindow.objects.filter(start_ms__lt=cutoff).delete()[0]


def set_operator_limit(key_id: int | None, project: str, model: str, period: str, limit: int | None) -> None:
    """An operator's limit on a key or a project (model "": each model); None takes it away, and a
    row with nothing learned either goes."""
    scope = scope_of(key_id, project)
    if limit is None:
        QuotaLimit.objects.filter(**scope, model=model, period=period).update(operator=None)
        QuotaLimit.objects.filter(**scope, model=model, period=period, learned__isnull=True).delete()
        _limits.forget()
        return
    QuotaLimit.objects.update_or_create(**scope, model=model, period=period, defaults={"operator": limit})
