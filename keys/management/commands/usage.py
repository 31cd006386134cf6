"""`python manage.py usage [--days N] [--by key|project|model|user|door|day|kind|tier]`: the ledger's summary."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from keys import usage
from keys.models import quota_day


class Command(BaseCommand):
    help = (
        "Images, Gemini calls, estimated cost and what the batch price saved, over the last N quota days, by "
        + ", ".join(usage.GROUPS)
        + "."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=30, help="Quota days back from today, today included.")
        parser.add_argument("--by", choices=list(usage.GROUPS), default="model")

    def handle(self, *args: Any, **options: Any) -> None:
        end = quota_day()
        start = end - dt.timedelta(days=max(1, options["days"]) - 1)
        rows = usage.summarize(start, end, options["by"])
        width = max([len(row.group) for row in rows] + [len(options["by"]), 10])
        header = f"{options['by']:<{width}}  {'calls':>7}  {'images':>7}  {'429s':>5}  {'failed':>6}  cost (USD)"
        self.stdout.write(header)
        for row in rows:
            figures = f"{row.calls:>7}  {row.images:>7}  {row.exhausted:>5}  {row.failed:>6}  ${row.cost:.4f}"
            self.stdout.write(f"{row.group:<{width}}  {figures}")
        images, calls = sum(row.images for row in rows), sum(row.calls for row in rows)
        cost = sum((row.cost for row in rows), Decimal(0))
        saved = sum((row.saved for row in rows), Decimal(0))
        at_batch = f" (the batch price saved ${saved:.4f})" if saved else ""
        self.stdout.write(
            f"{images} images, {calls} calls, ${cost:.4f} estimated{at_batch}, {start} to {end} (quota days)."
        )
