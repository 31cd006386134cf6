"""The model catalogue: Gemini image model ids, aliases, supported aspect ratios and pixel sizes.

Shared by the pool's client, the emulator and every door. Only resolve_model() reads a
setting (NANOCLONE_DEFAULT_MODEL), at call time, so the emulator can run without Django.
Pixel sizes follow Gemini's published size tables: the 1K size of each aspect
ratio, doubled for 2K and quadrupled for 4K; 0.5K (512) halves it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured

# 1K pixel sizes of the Gemini 3 image models, per aspect ratio.
_GEMINI3_1K: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "2:3": (848, 1264),
    "3:2": (1264, 848),
    "3:4": (896, 1200),
    "4:3": (1200, 896),
    "4:5": (928, 1152),
    "5:4": (1152, 928),
    "9:16": (768, 1376),
    "16:9": (1376, 768),
    "21:9": (1584, 672),
}
# Nano Banana 2 adds extreme ratios.
_FLASH31_1K: dict[str, tuple[int, int]] = {
    **_GEMINI3_1K,
    "1:4": (512, 2048),
    "4:1": (2048, 512),
    "1:8": (384, 3072),
    "8:1": (3072, 384),
}
_SCALE = {"512": 0.5, "1K": 1, "2K": 2, "4K": 4}


@dataclass(frozen=True)
class ImageModel:
    id: str
    label: str
    base_sizes: dict[str, tuple[int, int]]
    resolutions: tuple[str, ...]
    max_reference_images: int
    status: str  # what Google says of it, e.g. "GA since 2026-10-06" or "deprecated 2026-10-06"
    thinking_levels: tuple[str, ...] = ()  # what generationConfig.thinkingConfig.thinkingLevel may ask
    grounding: bool = False  # Google Search grounding (tools: [{googleSearch: {}}])
    deprecated: bool = False
    free_tier: bool = True  # free-tier projects may use it (Pro: 429 with limit 0)
    successor: str = ""  # the model that replaces it, when Google named one
    # Its id on Vertex AI (express-mode keys and service accounts): "" the same id, None not served there.
    vertex_id: str | None = ""

    def upstream_id(self, vertex: bool) -> str:
        """The id to call Gemini with, on the Gemini API or on Vertex AI."""
        return (self.vertex_id or self.id) if vertex else self.id

    @property
    def aspect_ratios(self) -> tuple[str, ...]:
        return tuple(self.base_sizes)

    def pixel_size(self, aspect_ratio: str | None, resolution: str | None) -> tuple[int, int]:
        width, height = self.base_sizes[aspect_ratio or "1:1"]
        scale = _SCALE[resolution or "1K"]
        return int(width * scale), int(height * scale)

    def nearest_ratio(self, width: int, height: int) -> str:
        """The supported aspect ratio closest to width:height (on a log scale, so 2:1 and 1:2 are alike)."""
        wanted = math.log(width / height)

        def distance(ratio: str) -> float:
            w, h = (int(part) for part in ratio.split(":"))
            return abs(math.log(w / h) - wanted)

        return min(self.aspect_ratios, key=distance)


# As of December 2026 (DESIGN.md, Models). Facts drift: `manage.py sync_models` asks Gemini's
# models.list what a key's project really sees. Vertex AI serves these under the same ids: its
# documentation moved gemini-3-pro-image-preview and gemini-3.1-flash-image-preview to
# gemini-3-pro-image and gemini-3.1-flash-image; for Nano Banana 2.1 and Lite it names no other id.
MODELS: dict[str, ImageModel] = {
    m.id: m
    for m in (
        ImageModel(
            "gemini-nano-banana-2.1",
            "Nano Banana 2.1",
            _FLASH31_1K,
            ("1K", "2K", "4K"),
            14,
            "GA since 2026-10-06",
            thinking_levels=("minimal", "medium", "high"),
            grounding=True,
        ),
        ImageModel(
            "gemini-3.1-flash-image",
            "Nano Banana 2",
            _FLASH31_1K,
            ("512", "1K", "2K", "4K"),
            14,
            "GA 2026-05-28, deprecated 2026-10-06 (shutdown date not announced)",
            thinking_levels=("minimal", "high"),
            grounding=True,
            deprecated=True,
            successor="gemini-nano-banana-2.1",
        ),
        ImageModel(
            "gemini-3-pro-image",
            "Nano Banana Pro",
            _GEMINI3_1K,
            ("1K", "2K", "4K"),
            14,
            "GA 2026-05-28; no free tier",
            thinking_levels=("high",),
            grounding=True,
            free_tier=False,
        ),
        ImageModel(
            "gemini-3.1-flash-lite-image",
            "Nano Banana 2 Lite",
            _FLASH31_1K,
            ("1K",),
            # Google's page gives no reference limit for Lite yet; 3 is what its sibling Flash
            # models accepted at launch. sync_models reports what the API says.
            3,
            "GA since 2026-06-30; fast and cheap",
        ),
    )
}
DEFAULT_MODEL = "gemini-nano-banana-2.1"

# Names clients send, mapped to a current model. Shut down: gemini-2.5-flash-image
# (2026-10-02), the -preview ids (2026-06-25) and the 2.0 experiments; their names are
# served by the model that replaced them, and every answer says which model served it.
ALIASES: dict[str, str] = {
    "nano-banana": "gemini-nano-banana-2.1",
    "nano-banana-2.1": "gemini-nano-banana-2.1",
    "nano-banana-2": "gemini-3.1-flash-image",
    "nano-banana-2-lite": "gemini-3.1-flash-lite-image",
    "nano-banana-pro": "gemini-3-pro-image",
    "google/nano-banana": "gemini-nano-banana-2.1",
    "google/nano-banana-2": "gemini-3.1-flash-image",
    "google/nano-banana-pro": "gemini-3-pro-image",
    "gemini-2.0-flash-exp": "gemini-nano-banana-2.1",
    "gemini-2.0-flash-exp-image-generation": "gemini-nano-banana-2.1",
    "gemini-2.0-flash-preview-image-generation": "gemini-nano-banana-2.1",
    "gemini-2.5-flash-image": "gemini-nano-banana-2.1",
    "gemini-2.5-flash-image-preview": "gemini-nano-banana-2.1",
    "gemini-3-pro-image-preview": "gemini-3-pro-image",
    "gemini-3.1-flash-image-preview": "gemini-3.1-flash-image",
}


def default_model_name() -> str:
    """NANOCLONE_DEFAULT_MODEL when set (an id or an alias), else the catalogue's default."""
    try:
        from django.conf import settings

        return str(getattr(settings, "DEFAULT_MODEL", "") or DEFAULT_MODEL)
    except ImproperlyConfigured:  # the emulator and scripts run without Django settings
        return DEFAULT_MODEL


def resolve_model(name: str | None) -> ImageModel | None:
    """The model a client's name refers to (None or "": the default model), or None when unknown."""
    name = (name or "").strip() or default_model_name()
    return MODELS.get(ALIASES.get(name, name))


def known_names() -> str:
    """Every id and alias a client may send, for error messages."""
    return ", ".join(sorted(MODELS)) + ", " + ", ".join(sorted(ALIASES))


def replacement_for(model_id: str) -> ImageModel | None:
    """What to use instead of a model Gemini retired: its successor, else the catalogue's default."""
    model = MODELS.get(model_id)
    named = model.successor if model is not None and model.successor else DEFAULT_MODEL
    return MODELS[named] if named != model_id else None


def model_for_size(model_id: str) -> ImageModel:
    """The size table for any model id the emulator may receive (unknown ids get Nano Banana 2's)."""
    return MODELS.get(ALIASES.get(model_id, model_id), MODELS[DEFAULT_MODEL])


def default_model() -> ImageModel:
    """The model used when a request names none (a misconfigured setting falls back to the catalogue's)."""
    return resolve_model(None) or MODELS[DEFAULT_MODEL]
