"""Per-user daily budgets (images or estimated cost per quota day), counted from the usage ledger."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Sum

from keys.cached import CachedTable
from keys.models import Budget, UsageRecord, quota_day

# Budgets are read on every submit: kept per process, so a user without one costs no query.
BUDGET_CACHE_SECONDS = 30.0
_budgets = CachedTable(
    Budget,
    lambda: {b.user_id: b for b in Budget.objects.exclude(images_per_day__isnull=True, cost_per_day__isnull=True)},
    BUDGET_CACHE_SECONDS,
)


@dataclass(frozen=True)
class Allowance:
    """What a user with a budget has used and has left today (None: that limit isn't set)."""

    images_used: int
    cost_used: Decimal
    images_per_day: int | None
    cost_per_day: Decimal | None
    day: dt.date

    @property
    def images_left(self) -> int | None:
        return None if self.images_per_day is None else max(0, self.images_per_day - self.images_used)

    @property
    def cost_left(self) -> Decimal | None:
        return None if self.cost_per_day is None else max(Decimal(0), self.cost_per_day - self.cost_used)


def allowance(user_id: int) -> Allowance | None:
    """The user's allowance for today, or None when they have no budget (then without a query)."""
    budget = _budgets.get().get(user_id)
    if budget is None:
        return None
    today = quota_day()
    used = UsageRecord.objects.filter(user_id=user_id, day=today).aggregate(images=Sum("images"), cost=Sum("cost"))
    return Allowance(used["images"] or 0, used["cost"] or Decimal(0), budget.images_per_day, budget.cost_per_day, today)
