"""Output post-processing: deliver an image at exactly the asked pixel size and in the asked format.

Gemini only produces its own sizes per aspect ratio (and PNG); doors that promise other sizes
or formats (the jobs API's 512x512, 1792x1024, JPEG, WEBP) put them in Job.options["output"].
"""

from __future__ import annotations

import io
import os
import threading

import PIL.Image
import PIL.ImageOps
from django.conf import settings

from gallery.storage import FORMATS

# Lossy encoders at settings that keep generated images clean.
_SAVE_OPTIONS: dict[str, dict[str, object]] = {
    "JPEG": {"quality": 92, "optimize": True},
    "WEBP": {"quality": 90, "method": 4},
    "PNG": {},
}


_CONVERTING = threading.BoundedSemaphore(os.cpu_count() or 2)


def convert(data: bytes, format: str | None = None, size: tuple[int, int] | None = None) -> bytes:
    """`data` as `format` (PNG, JPEG, WEBP) at exactly `size` pixels: scaled to cover, centre-cropped.

    Returns `data` untouched when it already is what was asked for.
    """
    PIL.Image.MAX_IMAGE_PIXELS = settings.MAX_IMAGE_PIXELS  # as storage.inspect does: the setting may change
    with PIL.Image.open(io.BytesIO(data)) as source:
        current = (source.format or "PNG").upper()
        target = (format or current).upper()
        if target not in FORMATS:
            raise ValueError(f"Unsupported output format {format}; use one of {', '.join(FORMATS)}.")
        if target == current and (size is None or source.size == size):
            return data
    # Decoding, scaling and encoding is CPU work holding tens of MB of pixels: many generations
    # finishing at once convert a core's worth at a time, not all together.
    with _CONVERTING:
        with PIL.Image.open(io.BytesIO(data)) as source:
            image = source.copy()
        if size is not None and image.size != size:
            # Cover then crop, never stretch: the ratio Gemini drew at is the nearest to the asked one.
            image = PIL.ImageOps.fit(image, size, PIL.Image.Resampling.LANCZOS)
        if target == "JPEG" and image.mode != "RGB":
            image = image.convert("RGB")  # JPEG has no alpha channel
        out = io.BytesIO()
        image.save(out, target, **_SAVE_OPTIONS[target])
        return out.getvalue()
