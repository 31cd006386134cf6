"""What a Gemini call is estimated to cost: the Price table (admin-editable), read through a small cache.

A call costs its images at the per-image price of its model, resolution and tier, plus its input
tokens and thinking tokens at their per-million rates; a free-tier key's calls cost 0. A Vertex AI
credential's calls cost Vertex AI's price where the table has one, else the Gemini API's. The table
is cached per process for PRICE_CACHE_SECONDS (an edit in the admin clears this process's cache at
once), so pricing a call adds no query to a generation.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings

from keys.cached import CachedTable
from keys.models import Price

PRICE_CACHE_SECONDS = 60.0
MILLION = Decimal(1_000_000)
_prices = CachedTable(
    Price, lambda: {(p.model, p.resolution, p.tier, p.platform): p for p in Price.objects.all()}, PRICE_CACHE_SECONDS
)


def prices() -> dict[tuple[str, str, str, str], Price]:
    """Every price by (model, resolution, tier, platform), at most PRICE_CACHE_SECONDS old."""
    return _prices.get()


def price_for(model: str, resolution: str, tier: str = "", vertex: bool = False) -> Price | None:
    """The price of one image of `model` at `resolution` ("" is Gemini's default, 1K) in `tier`, on
    Vertex AI when `vertex` (the Gemini API's price when Vertex AI has none of its own)."""
    known = prices()
    wanted = (model, resolution or "1K", tier or settings.PRICE_TIER)
    own = known.get((*wanted, Price.Platform.VERTEX)) if vertex else None
    return own or known.get((*wanted, Price.Platform.GEMINI_API))


def cost(
    model: str,
    resolution: str,
    images: int,
    prompt_tokens: int | None = None,
    thinking_tokens: int | None = None,
    free_tier: bool = False,
    vertex: bool = False,
    tier: str = "",
) -> Decimal:
    """The estimated USD cost of one call in `tier` (else NANOCLONE_PRICE_TIER); 0 on a free-tier
    key or for a model without a price."""
    price = None if free_tier else price_for(model, resolution, tier, vertex=vertex)
    if price is None:
        return Decimal(0)
    total = price.per_image * images
    total += price.input_per_million * (prompt_tokens or 0) / MILLION
    total += price.text_output_per_million * (thinking_tokens or 0) / MILLION
    return total.quantize(Decimal("0.000001"))
