"""Renditions: an image's bytes within a byte budget (a reduced JPEG preview, or the original when it fits),
and the display rendition the pages show.

MCP results carry images inside an agent's context window, where every byte costs: the default is a
preview of `preview_size` pixels on the long side; `full_size` sends the original file when it fits the
budget, else the largest JPEG that does.

A page shows an image at most about 1536 px wide, and a 4K PNG from Gemini is many megabytes: the chat
and the viewer load a WEBP of DISPLAY_SIZE px on the long side, made once on first view and kept next
to the thumbnails; opening and downloading give the original.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import PIL.Image

from gallery import storage
from gallery.models import Image

MIN_RENDITION_SIZE = 64
DISPLAY_SIZE = 1536
DISPLAY_QUALITY = 85


@dataclass(frozen=True)
class Rendition:
    """The image bytes one result carries, and how they relate to the original."""

    data: bytes
    mime_type: str
    width: int
    height: int
    note: str


def megabytes(size: int) -> str:
    return f"{size / 1_000_000:.2f} MB" if size >= 100_000 else f"{size / 1000:.0f} KB"


def _flatten(image: PIL.Image.Image) -> PIL.Image.Image:
    """RGB for JPEG, with transparency over white rather than the black convert() would give."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = PIL.Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _jpeg(image: PIL.Image.Image, longest: int, quality: int) -> tuple[bytes, int, int]:
    scale = min(1.0, longest / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resized = image if size == image.size else image.resize(size, PIL.Image.Resampling.LANCZOS)
    out = io.BytesIO()
    resized.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue(), size[0], size[1]


def rendition(image: Image, budget: int, preview_size: int, full_size: bool = False) -> Rendition:
    """The image within `budget` bytes. Raises FileNotFoundError when its file is missing."""
    original = storage.read(image.file)
    small = max(image.width, image.height) <= preview_size
    if len(original) <= budget and (full_size or small):
        return Rendition(original, image.mime_type, image.width, image.height, "the original file")
    with PIL.Image.open(io.BytesIO(original)) as source:
        flat = _flatten(source)
    longest = max(flat.size) if full_size else min(max(flat.size), preview_size)
    quality = 90 if full_size else 85
    while longest >= MIN_RENDITION_SIZE:
        data, width, height = _jpeg(flat, longest, quality)
        if len(data) <= budget:
            if not full_size:
                note = f"a {width}x{height} JPEG preview; pass full_size=true for more detail"
            elif (width, height) == (image.width, image.height):
                note = (
                    f"a full-size JPEG re-encoding: the original {image.format} is {megabytes(len(original))}, "
                    f"over the {megabytes(budget)} budget per result"
                )
            else:
                note = (
                    f"a {width}x{height} JPEG downscale, the largest that fits the {megabytes(budget)} budget per "
                    f"result (the original {image.width}x{image.height} {image.format} is "
                    f"{megabytes(len(original))}); download the original from its URL"
                )
            return Rendition(data, "image/jpeg", width, height, note)
        # Bytes grow with the pixel count: shrink by the square root of the excess, a little more.
        longest = min(int(longest * 0.9), int(longest * (budget / len(data)) ** 0.5))
    return Rendition(
        b"", "", 0, 0, f"no image attached: the {budget}-byte budget (NANOCLONE_MCP_MAX_IMAGE_BYTES) is too small"
    )


def ensure_display(file: str, data: bytes | None = None) -> None:
    """Make the display rendition of a stored file on its first use (from `data`, the file's bytes,
    when the caller has them). Raises storage.MissingFile, storage.StoreUnavailable."""
    name = storage.display_of(file)
    if storage.exists(name):
        return
    with PIL.Image.open(io.BytesIO(data if data is not None else storage.read(file))) as source:
        # reduce() by an integer factor first: far cheaper than resampling a 4K image whole.
        factor = max(1, max(source.size) // DISPLAY_SIZE)
        image = source.reduce(factor) if factor > 1 else source
        image.thumbnail((DISPLAY_SIZE, DISPLAY_SIZE), PIL.Image.Resampling.LANCZOS)
        out = io.BytesIO()
        image.convert("RGBA" if "A" in image.getbands() else "RGB").save(out, "WEBP", quality=DISPLAY_QUALITY, method=2)
    storage.write_once(name, out.getvalue())
