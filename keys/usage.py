"""What the pool served: the keys page's chart of requests per key per quota day (SVG geometry),
and the usage ledger's summaries (images, calls, estimated cost and what the batch price saved by
key, project, model, user, door, day, kind of credential or price tier) for the keys page, the admin,
GET /api/usage and `manage.py usage`.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count, Q, Sum
from django.utils import timezone

from keys.models import ApiKey, UsageRecord, quota_day

log = logging.getLogger(__name__)

# Distinguishable in light and dark themes, and for the common colour-vision deficiencies.
PALETTE = ("#4c6ef5", "#f59f00", "#12b886", "#e64980", "#7950f2", "#15aabf", "#fa5252", "#82c91e")
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 1000, 220, 36, 24, 10


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass
class Chart:
    days: list[dt.date]
    bars: list[Bar] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)  # (colour, label)
    ticks: list[tuple[float, int]] = field(default_factory=list)  # (y, value)
    labels: list[tuple[float, str]] = field(default_factory=list)  # (x, day)
    peak: int = 0
    total: int = 0
    width: int = WIDTH
    height: int = HEIGHT


def nice_step(at_least: float) -> int:
    """The smallest round step (1, 2 or 5 times a power of ten) of at least `at_least`: ticks read
    0/5/10/15/20, not 0/5/10/14/19."""
    magnitude = 1
    while True:
        for step in (magnitude, 2 * magnitude, 5 * magnitude):
            if step >= at_least:
                return step
        magnitude *= 10


def daily_chart(keys: list[ApiKey], days: int = 14) -> Chart:
    """Stacked bars: one column per quota day, one segment per key."""
    last = quota_day()
    span = [last - dt.timedelta(days=offset) for offset in range(days - 1, -1, -1)]
    # Every call the pool made has its ledger row (keys.pool.report), so the ledger's rows are the requests.
    calls = UsageRecord.objects.filter(day__gte=span[0], day__lte=last, key__isnull=False)
    counts: dict[tuple[int, dt.date], int] = {
        (row["key_id"], row["day"]): row["n"] for row in calls.values("key_id", "day").annotate(n=Count("id"))
    }
    per_day = {day: sum(counts.get((key.pk, day), 0) for key in keys) for day in span}
    chart = Chart(span, peak=max(per_day.values(), default=0), total=sum(per_day.values()))
    colours = {key.pk: PALETTE[index % len(PALETTE)] for index, key in enumerate(keys)}
    chart.legend = [(colours[key.pk], f"{key.label or 'key'} {key.masked}") for key in keys]
    tick = nice_step(chart.peak / 4)
    scale_max = 4 * tick  # four round steps, the top one at or above the busiest day
    plot_height = HEIGHT - BOTTOM - TOP
    column = (WIDTH - LEFT) / days
    for step in range(5):
        value = tick * step
        chart.ticks.append((TOP + plot_height * (1 - value / scale_max), value))
    for index, day in enumerate(span):
        x = LEFT + index * column + column * 0.18
        chart.labels.append((LEFT + index * column + column / 2, day.strftime("%b %-d")))
        base: float = TOP + plot_height
        for key in keys:
            count = counts.get((key.pk, day), 0)
            if not count:
                continue
            height = plot_height * count / scale_max
            base -= height
            title = f"{key.label or key.masked}: {count} request{'s' if count != 1 else ''} on {day:%Y-%m-%d}"
            chart.bars.append(
                Bar(round(x, 1), round(base, 1), round(column * 0.64, 1), round(height, 1), colours[key.pk], title)
            )
    return chart


# --- the usage ledger ----------------------------------------------------------------------------

GROUPS = {
    "key": "key_label",
    "project": "project",
    "model": "model",
    "user": "user_id",
    "door": "door",
    "day": "day",
    "kind": "kind",  # of credential: AI Studio key, Vertex AI express key, service account
    "tier": "tier",  # of price: standard, or batch (jobs at the Batch API's price)
}


@dataclass
class UsageRow:
    """One group's usage over a span of quota days."""

    group: str
    calls: int
    images: int
    cost: Decimal
    exhausted: int  # 429s
    failed: int  # refused, rejected and failed calls
    saved: Decimal = Decimal(0)  # what the standard tier would have cost more (batch calls)
    share: float = 0.0  # images relative to the largest group, 0..100, for the bars


def summarize(start: dt.date, end: dt.date, group_by: str = "model", user_id: int | None = None) -> list[UsageRow]:
    """Usage of the quota days start..end (inclusive) by `group_by` (a key of GROUPS), largest first
    (by day: in order). With `user_id`, that user's calls only."""
    column = GROUPS[group_by]
    records = UsageRecord.objects.filter(day__gte=start, day__lte=end)
    if user_id is not None:
        records = records.filter(user_id=user_id)
    grouped = (
        records.values(column)
        .annotate(
            calls=Count("id"),
            images=Sum("images"),
            cost=Sum("cost"),
            saved=Sum("saved"),
            exhausted=Count("id", filter=Q(outcome=UsageRecord.Outcome.EXHAUSTED)),
            failed=Count("id", filter=~Q(outcome__in=[UsageRecord.Outcome.IMAGE, UsageRecord.Outcome.EXHAUSTED])),
        )
        .order_by(column if group_by == "day" else "-images", column)
    )
    names = _user_names(grouped) if group_by == "user" else {}
    rows = [
        UsageRow(
            _label(group_by, row[column], names),
            row["calls"],
            row["images"] or 0,
            (row["cost"] or Decimal(0)).quantize(Decimal("0.000001")),
            row["exhausted"],
            row["failed"],
            (row["saved"] or Decimal(0)).quantize(Decimal("0.000001")),
        )
        for row in grouped
    ]
    peak = max((row.images for row in rows), default=0)
    for row in rows:
        row.share = round(100 * row.images / peak, 1) if peak else 0.0
    return rows


def _user_names(grouped: object) -> dict[int, str]:
    ids = [row["user_id"] for row in grouped if row["user_id"] is not None]  # type: ignore[attr-defined]
    users = get_user_model().objects.filter(pk__in=ids).values_list("pk", "username")
    return dict(users)


def _label(group_by: str, value: object, names: dict[int, str]) -> str:
    if group_by == "day":
        return str(value)
    if group_by == "user":
        return names.get(value, f"user {value}") if value is not None else "(no user)"  # type: ignore[call-overload]
    if group_by == "project":
        return str(value) or "(no project)"
    if group_by == "kind" and value in ApiKey.Kind.values:
        return str(ApiKey.Kind(value).label)
    return str(value) or "(none)"


@dataclass
class Panel:
    """One span (today, the last 30 days) by key, project and model, for the keys page and the admin."""

    title: str
    start: dt.date
    end: dt.date
    images: int
    calls: int
    cost: Decimal
    groups: dict[str, list[UsageRow]]
    saved: Decimal = Decimal(0)  # by the batch price


def panels() -> list[Panel]:
    today = quota_day()
    spans = (("Today", today), ("Last 30 days", today - dt.timedelta(days=29)))
    result = []
    for title, start in spans:
        groups = {name: summarize(start, today, name) for name in ("key", "project", "model", "kind")}
        models = groups["model"]
        result.append(
            Panel(
                title,
                start,
                today,
                sum(row.images for row in models),
                sum(row.calls for row in models),
                sum((row.cost for row in models), Decimal(0)),
                groups,
                sum((row.saved for row in models), Decimal(0)),
            )
        )
    return result


def prune() -> str:
    """Delete ledger rows older than NANOCLONE_USAGE_RETENTION_DAYS (the daily schedule runs this)."""
    cutoff = timezone.now() - dt.timedelta(days=settings.USAGE_RETENTION_DAYS)
    deleted, _ = UsageRecord.objects.filter(created_at__lt=cutoff).delete()
    summary = f"Usage ledger: {deleted} record(s) older than {settings.USAGE_RETENTION_DAYS} days deleted."
    log.info(summary)
    return summary
