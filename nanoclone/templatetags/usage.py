"""Template tags for usage: what a user's daily budget has left (the chat page shows it)."""

from __future__ import annotations

from typing import Any

from django import template

from keys import budgets

register = template.Library()


@register.simple_tag(takes_context=True)
def budget_left(context: dict[str, Any]) -> budgets.Allowance | None:
    """The signed-in user's allowance for today, or None without a budget."""
    user = getattr(context.get("request"), "user", None)
    return budgets.allowance(user.pk) if user is not None and user.is_authenticated else None
