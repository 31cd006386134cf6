"""The emulator's images: deterministic PNGs that show the prompt, drawn over one of a few cached
gradients, or over an edit of the last input image."""

from __future__ import annotations

import hashlib
import struct
import textwrap
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageChops, ImageDraw, ImageFont, ImageOps


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _colour(digest: bytes, offset: int) -> tuple[int, int, int]:
    r, g, b = digest[offset : offset + 3]
    return r, g, b


# A generated image is one of a few backgrounds with the prompt on top, so that the
# emulator's CPU (it shares the machine with what a benchmark measures) goes mostly on the
# text: each background is drawn, and its PNG rows compressed, once.
_BACKGROUNDS = 6
_BAND_ROWS = 16  # rows compressed together; text redoes only the bands it touches
_CANVAS_BUDGET = 96 * 2**20  # bytes of cached background pixels: every background at 1K and 2K


@dataclass(frozen=True)
class _Band:
    deflated: bytes  # raw deflate, ended by a sync flush so bands concatenate
    adler: int
    length: int


@dataclass(frozen=True)
class _Canvas:
    image: Image.Image
    bands: list[_Band]


_canvases: OrderedDict[tuple[int, tuple[int, int]], _Canvas] = OrderedDict()
_canvases_lock = threading.Lock()


def _background(variant: int, size: tuple[int, int]) -> Image.Image:
    # Built at 256x256 and scaled up: a per-pixel loop at 4K would take seconds.
    digest = hashlib.sha256(b"background %d" % variant).digest()
    ramp = Image.linear_gradient("L")
    mix = Image.blend(ramp, ramp.transpose(Image.Transpose.ROTATE_90), digest[0] / 255)
    small = ImageOps.colorize(mix, black=_colour(digest, 1), white=_colour(digest, 4), mid=_colour(digest, 7))
    return small.resize(size, Image.Resampling.BILINEAR)


def _canvas(variant: int, size: tuple[int, int]) -> _Canvas:
    with _canvases_lock:
        if (canvas := _canvases.get((variant, size))) is not None:
            _canvases.move_to_end((variant, size))
            return canvas
        image = _background(variant, size)
        bands = [_band(image.crop((0, top, size[0], top + _BAND_ROWS))) for top in range(0, size[1], _BAND_ROWS)]
        _canvases[(variant, size)] = canvas = _Canvas(image, bands)
        while sum(c.image.width * c.image.height * 3 for c in _canvases.values()) > _CANVAS_BUDGET:
            if len(_canvases) == 1:
                break
            _canvases.popitem(last=False)
        return canvas


def _band(image: Image.Image) -> _Band:
    """A background band's scanlines: the first unfiltered, so the band never depends on the rows
    above it (text may cover those), the others with PNG's Up filter (gradients shrink ~3x)."""
    stride = image.width * 3
    raw = image.tobytes()
    up = ImageChops.subtract_modulo(image, ImageChops.offset(image, 0, 1)).tobytes()
    return _deflate(
        b"".join([b"\0" + raw[:stride], *(b"\2" + up[i : i + stride] for i in range(stride, len(up), stride))])
    )


def _scanlines(pixels: bytes, width: int) -> bytes:
    """PNG scanlines of RGB `pixels`, unfiltered (filter type 0 before each row): the cheapest."""
    stride = width * 3
    return b"".join(b"\0" + pixels[start : start + stride] for start in range(0, len(pixels), stride))


def _deflate(scanlines: bytes) -> _Band:
    # Level 1: a 4K image is ~50 MB of raw pixels; zlib's default level is 5x slower.
    deflater = zlib.compressobj(1, zlib.DEFLATED, -15)
    return _Band(
        deflater.compress(scanlines) + deflater.flush(zlib.Z_SYNC_FLUSH), zlib.adler32(scanlines), len(scanlines)
    )


def _adler32_combine(first: int, second: int, second_length: int) -> int:
    # zlib's adler32_combine(), which Python's zlib does not expose.
    base = 65521
    remainder = second_length % base
    low = first & 0xFFFF
    high = (remainder * low) % base
    low = (low + (second & 0xFFFF) + base - 1) % base
    high = (high + (first >> 16) + (second >> 16) + base - remainder) % base
    return low | (high << 16)


def _png(size: tuple[int, int], bands: list[_Band]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    adler = 1
    for band in bands:
        adler = _adler32_combine(adler, band.adler, band.length)
    # zlib header (deflate, level 1), the bands, an empty final block, the checksum.
    stream = b"\x78\x01" + b"".join(band.deflated for band in bands) + b"\x03\x00" + struct.pack(">I", adler)
    header = struct.pack(">IIBBBBB", size[0], size[1], 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")


def _edited(source: Image.Image, digest: bytes, size: tuple[int, int]) -> Image.Image:
    # Recognisably the input (cropped to the output's ratio), yet visibly changed.
    fitted = ImageOps.fit(source, size, Image.Resampling.BILINEAR)
    tint = Image.new("RGB", size, _colour(digest, 1))
    return Image.blend(ImageOps.posterize(fitted, 4), tint, 0.12)


@lru_cache(maxsize=4096)
def _glyph(char: str, size: int, stroke: int) -> tuple[Image.Image, Image.Image, int, int, float]:
    """A character drawn once: white on a black outline, its mask, offsets from the pen and advance.

    Pasting these is ~10x cheaper than FreeType drawing a stroked line each time.
    """
    font = _font(size)
    left, top, right, bottom = (int(edge) for edge in font.getbbox(char, stroke_width=stroke))
    box = (max(1, right - left), max(1, bottom - top))
    outline, fill = Image.new("L", box), Image.new("L", box)
    ImageDraw.Draw(outline).text((-left, -top), char, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
    ImageDraw.Draw(fill).text((-left, -top), char, font=font, fill=255)
    stamp = Image.new("RGB", box)
    stamp.paste((255, 255, 255), mask=fill)
    return stamp, outline, left, top, float(font.getlength(char))


def _write(image: Image.Image, position: tuple[int, int], text: str, size: int, stroke: int) -> None:
    x, y = position
    pen = float(x)
    for char in text:
        stamp, mask, left, top, advance = _glyph(char, size, stroke)
        if not char.isspace():
            image.paste(stamp, (round(pen) + left, y + top), mask)
        pen += advance


def _text_layout(size: tuple[int, int], prompt: str, *, banded: bool) -> tuple[int, int, int, list[str]]:
    """Font size, margin, line height and the prompt's lines (cut with "…" where they would overflow)."""
    width, height = size
    font_size = max(10, min(width, height) // (28 if banded else 16))
    margin = font_size // 2 if banded else font_size
    line_height = font_size * 5 // 4
    max_lines = 2 if banded else max(1, (height - 3 * margin) // line_height)
    # Default font glyphs average ~0.55 em wide.
    columns = max(8, int((width - 2 * margin) / (font_size * 0.55)))
    lines = textwrap.wrap(prompt or "(no prompt)", columns, max_lines=max_lines, placeholder=" …")
    return font_size, margin, line_height, lines


def _draw_text(
    image: Image.Image, prompt: str, caption: str, *, banded: bool, picture: tuple[int, int] | None = None
) -> None:
    """The caption line, then the prompt's lines, white on a black outline.

    An edit writes into a fixed-height dark band at the bottom instead of the top, so a
    chain of edits overwrites one band rather than piling prompts on top of each other.
    `picture` is the whole picture's size when `image` is a crop of its top rows.
    """
    width, height = image.size
    font_size, margin, line_height, lines = _text_layout(picture or image.size, prompt, banded=banded)
    top = margin // 2
    if banded:
        band_top = height - (font_size // 2 + 2 * line_height + 2 * margin)
        band = image.crop((0, band_top, width, height))
        image.paste(Image.blend(band, Image.new("RGB", band.size), 0.7), (0, band_top))
        top = band_top + margin // 2
    _write(image, (margin, top), caption, max(8, font_size // 2), 0)
    for number, line in enumerate(lines):
        _write(
            image, (margin, top + font_size * 3 // 4 + number * line_height), line, font_size, max(1, font_size // 16)
        )


def render_png(prompt: str, size: tuple[int, int], seed: bytes, source: Image.Image | None, caption: str) -> bytes:
    """A PNG of exactly `size` pixels showing `prompt`.

    Drawn over one of a few gradients (chosen by `seed`), or over an edit of `source` tinted by `seed`.
    """
    digest = hashlib.sha256(seed).digest()
    width, height = size
    variant = digest[0] % _BACKGROUNDS
    if source is not None or width * height * 3 * _BACKGROUNDS > _CANVAS_BUDGET:
        # An edit, or a 4K image: drawn whole each time rather than evicting every other background.
        image = _edited(source, digest, size) if source is not None else _background(variant, size)
        _draw_text(image, prompt, caption, banded=source is not None)
        return _png(size, [_deflate(_scanlines(image.tobytes(), width))])
    canvas = _canvas(variant, size)
    font_size, margin, line_height, lines = _text_layout(size, prompt, banded=False)
    # Only the bands under the text are drawn and compressed again.
    text_bottom = margin // 2 + font_size * 3 // 4 + len(lines) * line_height + font_size // 2
    rows = min(height, -(-text_bottom // _BAND_ROWS) * _BAND_ROWS)
    top = canvas.image.crop((0, 0, width, rows))
    _draw_text(top, prompt, caption, banded=False, picture=size)
    rest = canvas.bands[rows // _BAND_ROWS :] if rows < height else []
    return _png(size, [_deflate(_scanlines(top.tobytes(), width)), *rest])
