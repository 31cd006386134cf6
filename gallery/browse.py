"""Browsing a user's images: filters, keyset pages in a stable order, favourites and deletion.

Pages are keyset pages over (created_at, id), the gallery's order, so a page costs the same
at image 10 or 10,000 and images generated while someone scrolls never shift what they see.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.models import User
from django.db import connection
from django.db.models import BooleanField, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.http import QueryDict

from gallery.models import Image

# What a grid tile needs; the rest (the thought signature, ...) stays in the database.
RESTORE_LIMIT = 1000
TILE_FIELDS = ("id", "prompt", "width", "height", "model", "favorite", "created_at", "conversation_id", "mime_type")


@dataclass(frozen=True)
class Filters:
    conversation: str = ""
    model: str = ""
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    favorites: bool = False
    q: str = ""
    board: int | None = None  # a Board's id: its images only

    @classmethod
    def from_query(cls, params: QueryDict) -> Filters:
        """Filters from a query string; values that don't parse are ignored rather than failing the page."""
        conversation = params.get("conversation", "").strip()
        try:
            conversation = str(uuid.UUID(conversation)) if conversation else ""
        except ValueError:
            conversation = ""
        return cls(
            conversation=conversation,
            model=params.get("model", "").strip()[:80],
            date_from=_date(params.get("from", "")),
            date_to=_date(params.get("to", "")),
            favorites=params.get("favorites", "") in {"1", "on", "true"},
            q=" ".join(params.get("q", "").split())[:200],
            board=int(board) if (board := params.get("board", "")).isdigit() and len(board) < 10 else None,
        )

    @property
    def active(self) -> bool:
        return any((self.conversation, self.model, self.date_from, self.date_to, self.favorites, self.q, self.board))

    def query(self) -> dict[str, str]:
        values = {
            "conversation": self.conversation,
            "model": self.model,
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
            "favorites": "1" if self.favorites else "",
            "q": self.q,
            "board": str(self.board) if self.board else "",
        }
        return {name: value for name, value in values.items() if value}

    def querystring(self, **extra: str) -> str:
        return urlencode({**self.query(), **extra})


def _date(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value.strip()) if value.strip() else None
    except ValueError:
        return None


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def images(user: User, filters: Filters) -> QuerySet[Image]:
    """The user's generated images matching the filters, newest first (the (user, role, -created_at) index)."""
    found = Image.objects.filter(user=user, role=Image.Role.OUTPUT)
    if filters.conversation:
        found = found.filter(conversation_id=filters.conversation)
    if filters.model:
        found = found.filter(model=filters.model)
    if filters.date_from:
        found = found.filter(created_at__gte=_day_start(filters.date_from))
    if filters.date_to:
        found = found.filter(created_at__lt=_day_start(filters.date_to + dt.timedelta(days=1)))
    if filters.favorites:
        # IN (true), not = true: Django writes the latter as the bare column, which an index can't
        # seek on, so the count would read every image's entry instead of the favourites'.
        found = found.filter(favorite__in=[True])
    if filters.board:
        found = found.filter(boards__id=filters.board, boards__user=user)
    return search(found, filters.q).order_by("-created_at", "-id")


# gallery_image_prompt (migration 0004): on SQLite an FTS5 trigram index of the prompts, so a word
# of 3 characters or more is found without reading every prompt; on PostgreSQL a pg_trgm GIN
# index serves the UPPER(prompt) LIKE of `icontains` itself.
_FTS_MATCH = "{}gallery_image.rowid IN (SELECT rowid FROM gallery_image_prompt WHERE gallery_image_prompt MATCH %s)"
_FTS_COUNT = "SELECT COUNT(*) FROM gallery_image_prompt WHERE gallery_image_prompt MATCH %s"
# The planner can't tell how many images match, so the index says first (any user's, under a ms):
# up to this many, the page and its count start at the matches (a word found 11 times in 100,000
# images: 0.2 ms each, where walking every image took 14); more, and a unary + makes them walk the
# gallery's order instead, where a page stops as soon as it is full (a word in 19,000 prompts: the
# page in 3 ms) rather than sorting every match.
FEW_MATCHES = 2000


def search(found: QuerySet[Image], q: str) -> QuerySet[Image]:
    """The images whose prompt contains every word of `q` (at most 8), in any case: a substring match."""
    words = q.split()[:8]
    if connection.vendor != "sqlite":
        indexed: list[str] = []
    else:
        indexed = [word for word in words if len(word) >= 3]  # a trigram index knows no shorter words
    if indexed:
        phrases = " AND ".join('"' + word.replace('"', '""') + '"' for word in indexed)
        with connection.cursor() as cursor:
            cursor.execute(_FTS_COUNT, [phrases])
            (matches,) = cursor.fetchone()
        walk = "" if matches <= FEW_MATCHES else "+"
        found = found.filter(RawSQL(_FTS_MATCH.format(walk), (phrases,), output_field=BooleanField()))
    for word in words:
        # For an ASCII word the trigram match is LIKE's own answer. Otherwise it finds a superset
        # (it folds non-ASCII case, LIKE doesn't), and LIKE keeps exactly what it always found.
        if word not in indexed or not word.isascii():
            found = found.filter(prompt__icontains=word)
    return found


def encode_cursor(item: Any) -> str:
    """Where `item` (anything with created_at and a UUID pk) stands in (-created_at, -id) order."""
    raw = f"{item.created_at.isoformat()}|{item.pk}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID] | None:
    """The position a cursor names, or None when it does not parse."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, image_id = raw.split("|", 1)
        return dt.datetime.fromisoformat(stamp), uuid.UUID(image_id)
    except ValueError:
        return None


@dataclass
class Page:
    items: list[Any]
    next_cursor: str  # empty on the last page

    @property
    def last_cursor(self) -> str:
        """Where this page ends, even on the last page: what a reloaded page restores up to."""
        return encode_cursor(self.items[-1]) if self.items else ""


def page(found: QuerySet[Image], after: str = "", size: int = 60, through: str = "") -> Page:
    """One page of tiles after the `after` cursor; `through` instead returns everything up to that cursor
    (capped), so a reloaded page can restore the images it had scrolled through."""
    found = found.only(*TILE_FIELDS)
    position = decode_cursor(after)  # one that doesn't parse starts from the top rather than failing the page
    if through and (end := decode_cursor(through)):
        if position:
            found = _after(found, position)
        stamp, image_id = end
        restored = list(found.filter(Q(created_at__gt=stamp) | Q(created_at=stamp, id__gte=image_id))[:RESTORE_LIMIT])
        # Whether more follow is found out by the next page request, which may come back empty.
        return Page(restored, encode_cursor(restored[-1]) if restored else "")
    return keyset_page(found, position, size)


def _after(items: QuerySet[Any], position: tuple[dt.datetime, uuid.UUID]) -> QuerySet[Any]:
    stamp, item_id = position
    # created_at <= stamp alone gives the index a range to seek to, where the OR would scan up to it.
    return items.filter(Q(created_at__lt=stamp) | Q(created_at=stamp, id__lt=item_id), created_at__lte=stamp)


def _before(items: QuerySet[Any], position: tuple[dt.datetime, uuid.UUID]) -> QuerySet[Any]:
    stamp, item_id = position
    return items.filter(Q(created_at__gt=stamp) | Q(created_at=stamp, id__gt=item_id), created_at__gte=stamp)


def keyset_page(
    items: QuerySet[Any], position: tuple[dt.datetime, uuid.UUID] | None, size: int, *, before: bool = False
) -> Page:
    """The `size` items after `position` (None: the first page) in (-created_at, -id) order, or with
    `before` the `size` items just before it (still in that order; `next_cursor` then says whether
    more lie before them).

    Immutable keys, so a page costs the same deep in the list and new rows never shift what follows.
    """
    if before and position:
        rows = list(_before(items, position).order_by("created_at", "id")[: size + 1])
        more = len(rows) > size
        rows = rows[:size][::-1]
        return Page(rows, encode_cursor(rows[0]) if more and rows else "")
    found = items.order_by("-created_at", "-id")
    rows = list((_after(found, position) if position else found)[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return Page(rows, encode_cursor(rows[-1]) if more and rows else "")


def set_favorite(image: Image, favorite: bool) -> None:
    Image.objects.filter(pk=image.pk).update(favorite=favorite)
    image.favorite = favorite


def delete_image(image: Image) -> None:
    """Delete an image and its files once no other image row (a re-used reference, a twin) points at them."""
    Image.objects.filter(pk=image.pk).delete_with_files()
