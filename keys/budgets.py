"""Per-user daily budgets (images or estimated cost per quota day), counted from the usage ledger."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import DecimalField, IntegerField, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from keys.models import Budget, UsageRecord, quota_day


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
    """The user's allowance for today, or None when they have no budget. One query."""
    today = quota_day()
    ledger = UsageRecord.objects.filter(user_id=OuterRef("user_id"), day=today).order_by().values("user_id")
    budget = (
        Budget.objects.filter(user_id=user_id)
        .annotate(
            images_used=Coalesce(
                Subquery(ledger.annotate(n=Sum("images")).values("n")), Value(0), output_field=IntegerField()
            ),
            cost_used=Coalesce(
                Subquery(ledger.annotate(c=Sum("cost")).values("c")),
                Value(Decimal(0)),
                output_field=DecimalField(max_digits=12, decimal_places=6),
            ),
        )
        .first()
    )
    if budget is None or (budget.images_per_day is None and budget.cost_per_day is None):
        return None
    return Allowance(
        int(budget.images_used),
        Decimal(budget.cost_used),
        budget.images_per_day,
        budget.cost_per_day,
        today,
    )
