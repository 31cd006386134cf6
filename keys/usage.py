"""The keys page's chart: requests per key per quota day, drawn server-side as SVG geometry."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from keys.models import ApiKey, KeyUsageDay, quota_day

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


def daily_chart(keys: list[ApiKey], days: int = 14) -> Chart:
    """Stacked bars: one column per quota day, one segment per key."""
    last = quota_day()
    span = [last - dt.timedelta(days=offset) for offset in range(days - 1, -1, -1)]
    counts: dict[tuple[int, dt.date], int] = {
        (row.key_id, row.day): row.count for row in KeyUsageDay.objects.filter(day__gte=span[0], day__lte=last)
    }
    per_day = {day: sum(counts.get((key.pk, day), 0) for key in keys) for day in span}
    chart = Chart(span, peak=max(per_day.values(), default=0), total=sum(per_day.values()))
    colours = {key.pk: PALETTE[index % len(PALETTE)] for index, key in enumerate(keys)}
    chart.legend = [(colours[key.pk], f"{key.label or 'key'} {key.masked}") for key in keys]
    scale_max = max(chart.peak, 4)
    plot_height = HEIGHT - BOTTOM - TOP
    column = (WIDTH - LEFT) / days
    for step in range(5):
        value = round(scale_max * step / 4)
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
