"""The chat's conversation sidebar: the user's chats (or what API clients and agents made), searched
and loaded in pages, always down to the conversation that is open so the page can scroll to it."""

from __future__ import annotations

import base64
import datetime as dt
import uuid

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from conversations.models import Conversation, Job, Message
from nanoclone.pages import PageRequest

PAGE_SIZE = 30
THROUGH_LIMIT = 1000  # an open conversation deeper than this is not scrolled to
SOURCE = "chat"
OTHERS = "others"  # ?conversations=others: the sidebar lists what API clients and agents made
FIELDS = ("id", "title", "updated_at")


class SidebarPage(list[Conversation]):
    """One page of the sidebar; `next_cursor` (empty on the last page) asks for the next one."""

    next_cursor = ""


def _from_chat() -> Exists:
    return Exists(Job.objects.filter(conversation=OuterRef("pk"), source=SOURCE))


def made_elsewhere(user: User) -> QuerySet[Conversation]:
    """The user's conversations no chat turn touched: API clients, dialects and MCP make many, one a
    call, and they would crowd the chat's sidebar."""
    return Conversation.objects.filter(user=user).exclude(_from_chat())


def listed(user: User, others: bool = False, q: str = "") -> QuerySet[Conversation]:
    """The conversations the sidebar lists, newest activity first; `q` matches titles and prompts."""
    found: QuerySet[Conversation]
    if others:
        first_source = Job.objects.filter(conversation=OuterRef("pk")).order_by("created_at").values("source")[:1]
        found = made_elsewhere(user).annotate(origin=Subquery(first_source))
    else:
        found = Conversation.objects.filter(user=user).filter(_from_chat())
    for word in q.split()[:8]:
        prompted = Message.objects.filter(conversation=OuterRef("pk"), role=Message.Role.USER, text__icontains=word)
        found = found.filter(Q(title__icontains=word) | Exists(prompted))
    return found.only(*FIELDS).order_by("-updated_at", "-id")


def _cursor(item: Conversation) -> str:
    return base64.urlsafe_b64encode(f"{item.updated_at.isoformat()}|{item.pk}".encode()).decode().rstrip("=")


def _position(cursor: str) -> tuple[dt.datetime, uuid.UUID] | None:
    try:
        stamp, pk = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split("|", 1)
        return dt.datetime.fromisoformat(stamp), uuid.UUID(pk)
    except ValueError:
        return None


def _not_after(found: QuerySet[Conversation], stamp: dt.datetime, pk: uuid.UUID) -> QuerySet[Conversation]:
    return found.filter(Q(updated_at__gt=stamp) | Q(updated_at=stamp, id__gte=pk))


def page(
    found: QuerySet[Conversation], after: str = "", current: uuid.UUID | None = None, size: int = PAGE_SIZE
) -> SidebarPage:
    """The `size` conversations after the `after` cursor (keyset over (-updated_at, -id)), or more:
    down to `current` when it is further on, so the open conversation is always in the list."""
    if position := _position(after):
        stamp, pk = position
        found = found.filter(Q(updated_at__lt=stamp) | Q(updated_at=stamp, id__lt=pk))
    rows = list(found[: size + 1])
    if current is not None and current not in {row.pk for row in rows[:size]}:
        open_one = found.filter(pk=current).values_list("updated_at", flat=True).first()
        if open_one is not None:
            through = list(_not_after(found, open_one, current)[:THROUGH_LIMIT])
            beyond = found.filter(Q(updated_at__lt=open_one) | Q(updated_at=open_one, id__lt=current))
            rows, size = through + list(beyond[:1]), len(through)
    result = SidebarPage(rows[:size])
    if len(rows) > size and result:
        result.next_cursor = _cursor(result[-1])
    return result


def for_request(request: PageRequest, others: bool = False) -> SidebarPage:
    """The sidebar's first page for a chat page (down to its open conversation)."""
    current = (request.resolver_match.kwargs.get("conversation_id") if request.resolver_match else None) or None
    return page(listed(request.user, others), current=current)


@login_required
@require_GET
def sidebar_list(request: PageRequest) -> HttpResponse:
    """The sidebar's list as a fragment: a search (`q`), or the next page (`after`)."""
    others = request.GET.get("conversations") == OTHERS
    q = " ".join(request.GET.get("q", "").split())[:200]
    try:
        current = uuid.UUID(request.GET.get("current", ""))
    except ValueError:
        current = None
    found = page(listed(request.user, others, q), after=request.GET.get("after", ""), current=current)
    context = {"conversations": found, "others": others, "q": q, "current_id": current}
    template = "conversations/_sidebar_items.html" if request.GET.get("after") else "conversations/_sidebar_list.html"
    return render(request, template, context)
