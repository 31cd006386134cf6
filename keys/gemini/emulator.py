"""An offline Gemini image API: a real HTTP server the real `google-genai` SDK can talk to.

Serves `POST /{v1,v1beta}/models/{model}:generateContent` plus `GET .../models[/{id}]`,
answering with deterministic PNGs that show the prompt (or an edit of the last input
image). Misbehaviour is chosen by the API key (`emu-429-*`, `emu-429bare-*` (no details),
`emu-quota<N>-*` (N a day per model), `emu-rpm<N>-*` (N per model per `minute_seconds`),
`emu-free-*` (Pro: limit 0), a `-p<ID>-` part (keys sharing one project's quotas),
`emu-invalid-*`, `emu-denied-*`, `emu-500-*`, `emu-slow<MS>-*`) and by the prompt
(`[block]`, `[imagesafety]`, `[noimage]`). `GET /emulator/requests` shows what it
received; `DELETE` clears that log.

Standard library + Pillow only, and no Django: tests and benchmarks import it bare.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import hashlib
import io
import json
import math
import re
import secrets
import socket
import struct
import sys
import textwrap
import threading
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import pybase64
from PIL import Image, ImageChops, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from keys.gemini.catalogue import ALIASES, MODELS, ImageModel, model_for_size

JSON = dict[str, Any]

_GENERATE_PATH = re.compile(r"^/(v1|v1beta)/models/([^/:]+):generateContent$")
_MODELS_PATH = re.compile(r"^/(v1|v1beta)/models(?:/([^/:]+))?$")
_QUOTA_KEY = re.compile(r"^emu-quota(\d+)-")
_RPM_KEY = re.compile(r"^emu-rpm(\d+)-")
_PROJECT_PART = re.compile(r"-p([A-Za-z0-9]+)-")
_SLOW_KEY = re.compile(r"^emu-slow(\d+)-")

# How often the serve loop checks for stop(): tests start and stop many emulators.
_POLL_SECONDS = 0.05
_HELP_URL = "https://developers.generativeai.google/guide/troubleshooting"
# Gemini bills ~258 tokens per input image and a fixed token count per output image,
# which depends on the model and the image size (see Gemini's pricing page).
_INPUT_IMAGE_TOKENS = 258
_OUTPUT_IMAGE_TOKENS: dict[str, dict[str, int]] = {
    "gemini-3-pro-image": {"1K": 1120, "2K": 1120, "4K": 2000},
    "gemini-3.1-flash-image": {"512": 747, "1K": 1120, "2K": 1680, "4K": 2520},
    "gemini-nano-banana-2.1": {"1K": 1120, "2K": 1680, "4K": 2520},
    "gemini-3.1-flash-lite-image": {"1K": 1120},
}


class GeminiError(Exception):
    """An answer in Google's error shape: `{"error": {code, message, status, details}}`."""

    def __init__(self, code: int, status: str, message: str, details: list[JSON] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.body: JSON = {"error": {"code": code, "message": message, "status": status, "details": details or []}}


def _invalid_argument(message: str) -> GeminiError:
    return GeminiError(400, "INVALID_ARGUMENT", message)


PER_DAY = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
PER_MINUTE = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"


def _quota_exhausted(model: str, limit: int, quota_id: str = PER_DAY, retry_seconds: float = 38.0) -> GeminiError:
    # The body a free-tier key gets once a quota is spent, details included: clients read
    # QuotaFailure to tell a daily quota from a per-minute rate limit, and RetryInfo for the wait.
    metric = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
    message = (
        "You exceeded your current quota, please check your plan and billing details. "
        "For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n"
        f"* Quota exceeded for metric: {metric}, limit: {limit}, model: {model}\n"
        f"Please retry in {retry_seconds:.1f}s."
    )
    violation = {
        "quotaMetric": metric,
        "quotaId": quota_id,
        "quotaDimensions": {"location": "global", "model": model},
        "quotaValue": str(limit),
    }
    return GeminiError(
        429,
        "RESOURCE_EXHAUSTED",
        message,
        [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]},
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [
                    {
                        "description": "Learn more about Gemini API quotas",
                        "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                    }
                ],
            },
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_seconds:g}s"},
        ],
    )


def _key_error(key: str | None) -> GeminiError | None:
    """The error an `emu-*` key always gets (quota keys are counted elsewhere)."""
    if not key:
        return GeminiError(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API.",
        )
    if key.startswith("emu-invalid-"):
        message = "API key not valid. Please pass a valid API key."
        return GeminiError(
            400,
            "INVALID_ARGUMENT",
            message,
            [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                },
                {
                    "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                    "locale": "en-US",
                    "message": message,
                },
            ],
        )
    if key.startswith("emu-denied-"):
        return GeminiError(
            403,
            "PERMISSION_DENIED",
            "Permission denied: Consumer has been suspended.",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "CONSUMER_SUSPENDED",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            ],
        )
    if key.startswith("emu-500-"):
        return GeminiError(500, "INTERNAL", f"An internal error has occurred. Please retry or report in {_HELP_URL}")
    return None


# --- the request, as the emulator understands it ---------------------------------------


def _decode_base64(data: str) -> bytes:
    # The SDK sends inline data URL-safe encoded (`-_`); other clients send standard `+/`.
    cleaned = data.replace("-", "+").replace("_", "/")
    return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)


def _inline_images(contents: list[JSON]) -> list[JSON]:
    images = []
    for content in contents:
        for part in content.get("parts") or []:
            # The SDK sends the blob's own keys snake_case (`mime_type`) inside camelCase `inlineData`.
            blob = part.get("inlineData") or part.get("inline_data")
            if not isinstance(blob, dict):
                continue
            mime_type = str(blob.get("mimeType") or blob.get("mime_type") or "image/")
            if mime_type.startswith("image/"):  # a PDF or audio part is not an image to edit
                images.append(blob)
    return images


def _last_user_text(contents: list[JSON]) -> str:
    for content in reversed(contents):
        if content.get("role", "user") == "user":
            return " ".join(str(p["text"]) for p in content.get("parts") or [] if "text" in p).strip()
    return ""


def _nearest_ratio(model: ImageModel, width: int, height: int) -> str:
    target = math.log(width / height)
    return min(model.aspect_ratios, key=lambda r: abs(math.log(_ratio_value(r)) - target))


def _ratio_value(ratio: str) -> float:
    w, h = ratio.split(":")
    return int(w) / int(h)


# --- images ------------------------------------------------------------------------------


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


def _open_image(blob: JSON) -> Image.Image:
    try:
        data = _decode_base64(str(blob.get("data", "")))
        image = Image.open(io.BytesIO(data))
        image.load()
    except (binascii.Error, ValueError, OSError, UnidentifiedImageError) as exc:
        raise _invalid_argument(f"Unable to process input image. Please retry or report in {_HELP_URL}") from exc
    return ImageOps.exif_transpose(image).convert("RGB")


# --- generateContent ------------------------------------------------------------------


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def generate(model_name: str, request: JSON) -> JSON:
    """The generateContent answer for a parsed request body (raises GeminiError)."""
    contents = request.get("contents")
    if not isinstance(contents, list) or not contents or not all(isinstance(c, dict) for c in contents):
        raise _invalid_argument("* GenerateContentRequest.contents: contents is not specified")
    config = request.get("generationConfig") or {}
    if not isinstance(config, dict) or not isinstance(config.get("imageConfig") or {}, dict):
        raise _invalid_argument("Invalid value at 'generation_config'")
    image_config = config.get("imageConfig") or {}
    model = model_for_size(model_name)
    ratio, resolution = image_config.get("aspectRatio"), image_config.get("imageSize")
    if ratio is not None and ratio not in model.aspect_ratios:
        raise _invalid_argument(f"Unsupported aspect ratio: {ratio}. Supported: {', '.join(model.aspect_ratios)}")
    if resolution is not None and resolution not in model.resolutions:
        raise _invalid_argument(f"Unsupported image size: {resolution}. Supported: {', '.join(model.resolutions)}")
    # Google's JSON parser takes both spellings of a field, and google-genai sends thinking_level so.
    thinking_config = config.get("thinkingConfig") or config.get("thinking_config") or {}
    thinking = str(thinking_config.get("thinkingLevel") or thinking_config.get("thinking_level") or "").lower()
    if thinking and thinking not in model.thinking_levels:
        raise _invalid_argument(f"Thinking level {thinking.upper()} is not supported for this model.")
    grounded = any(
        isinstance(tool, dict) and ("googleSearch" in tool or "google_search" in tool)
        for tool in request.get("tools") or []
    )
    if grounded and not model.grounding:
        raise _invalid_argument("Search as a tool is not enabled for this model.")

    prompt = _last_user_text(contents)
    images = _inline_images(contents)
    # Every turn is billed as prompt, not just the last one.
    all_text = " ".join(str(p["text"]) for c in contents for p in c.get("parts") or [] if "text" in p)
    prompt_tokens = _tokens(all_text) + _INPUT_IMAGE_TOKENS * len(images)
    envelope: JSON = {"modelVersion": model_name, "responseId": secrets.token_urlsafe(16)}

    if "[block]" in prompt:
        usage = {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens}
        return {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": usage, **envelope}
    if "[imagesafety]" in prompt:
        usage = {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens}
        return {
            "candidates": [{"finishReason": "IMAGE_SAFETY", "index": 0}],
            "usageMetadata": usage,
            **envelope,
        }

    modalities = [str(m).upper() for m in config.get("responseModalities") or ["TEXT", "IMAGE"]]
    want_image = "IMAGE" in modalities and "[noimage]" not in prompt
    want_text = "TEXT" in modalities or not want_image
    parts: list[JSON] = []
    candidate_tokens = 0
    if want_text:
        text = f"Here is your image of: {prompt}" if want_image else f"(text only) You said: {prompt}"
        parts.append({"text": text})
        candidate_tokens += _tokens(text)
    if want_image:
        source = _open_image(images[-1]) if images else None
        if ratio is None and source is not None:
            ratio = _nearest_ratio(model, *source.size)
        size = model.pixel_size(ratio, resolution)
        # Same model + contents + config -> same seed -> byte-identical PNG.
        seed = json.dumps([model_name, contents, config], sort_keys=True).encode()
        kind = "edit" if source is not None else "image"
        shape = f"{ratio or '1:1'} {resolution or '1K'} · {size[0]}x{size[1]}"
        caption = f"Gemini emulator {kind} · {model.id} · {shape}"
        png = render_png(prompt, size, seed, source, caption)
        signature = hashlib.sha512(b"thought:" + seed).digest()
        parts.append(
            {
                "inlineData": {"mimeType": "image/png", "data": pybase64.b64encode(png).decode()},
                "thoughtSignature": base64.b64encode(signature).decode(),
            }
        )
        candidate_tokens += _OUTPUT_IMAGE_TOKENS.get(model.id, {}).get(resolution or "1K", 1290)

    usage = {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": candidate_tokens,
        "totalTokenCount": prompt_tokens + candidate_tokens,
    }
    candidate: JSON = {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
    if grounded:
        candidate["groundingMetadata"] = _grounding_metadata(prompt)
    return {"candidates": [candidate], "usageMetadata": usage, **envelope}


def _grounding_metadata(prompt: str) -> JSON:
    """Two made-up web sources for the prompt, in Gemini's groundingMetadata shape."""
    query = " ".join(prompt.split()[:8])
    slug = re.sub(r"[^a-z0-9]+", "-", query.lower()).strip("-") or "search"
    return {
        "webSearchQueries": [query],
        "groundingChunks": [
            {"web": {"uri": f"https://example.org/{slug}", "title": f"example.org: {query}"}},
            {"web": {"uri": f"https://example.com/{slug}/facts", "title": f"example.com: facts about {query}"}},
        ],
        "searchEntryPoint": {"renderedContent": f"<div>Google Search: {query}</div>"},
    }


# --- HTTP --------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a sleeping (latency) handler must not keep the process alive
    emulator: GeminiEmulator

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def close_connections(self) -> None:
        """Hang up kept-alive connections, or their threads would go on answering after stop()."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out hangs up mid-answer: normal for a latency emulator, not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so clients reuse connections like with Google
    server_version = "GeminiEmulator"
    sys_version = ""

    @property
    def emulator(self) -> GeminiEmulator:
        return cast(_Server, self.server).emulator

    def log_message(self, format: str, *args: Any) -> None:
        if self.emulator.verbose:
            super().log_message(format, *args)

    def _send_json(self, status: int, body: JSON | None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _api_key(self) -> str | None:
        keys = parse_qs(urlsplit(self.path).query).get("key", [])
        return self.headers.get("x-goog-api-key") or (keys[0] if keys else None)

    def _not_found(self) -> None:
        path = urlsplit(self.path).path
        self._send_json(404, GeminiError(404, "NOT_FOUND", f"Method not found: {self.command} {path}").body)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/emulator/requests":
            self._send_json(200, {"requests": self.emulator.requests})
            return
        match = _MODELS_PATH.match(path)
        if not match:
            self._not_found()
            return
        version, model_id = match.groups()
        # A key check lets clients (re)test a key without spending generation quota.
        if error := _key_error(self._api_key()):
            self._send_json(error.code, error.body)
        elif model_id is None:
            listed = [_model_resource(m) for m in MODELS.values() if m.id not in self.emulator.hidden_models]
            listed += [_extra_model_resource(name) for name in self.emulator.extra_models]
            self._send_json(200, {"models": listed})
        elif (model := MODELS.get(ALIASES.get(model_id, model_id))) is not None:
            self._send_json(200, _model_resource(model))
        else:
            message = (
                f"models/{model_id} is not found for API version {version}, or is not supported for generateContent."
            )
            self._send_json(404, GeminiError(404, "NOT_FOUND", message).body)

    def do_DELETE(self) -> None:
        if urlsplit(self.path).path == "/emulator/requests":
            self.emulator.clear()
            self._send_json(204, None)
        else:
            self._not_found()

    def do_POST(self) -> None:
        body = self._read_body()  # always drained, or the kept-alive connection desyncs
        match = _GENERATE_PATH.match(urlsplit(self.path).path)
        if not match:
            self._not_found()
            return
        version, model_name = match.groups()
        key = self._api_key()
        record: JSON = {
            "time": datetime.now(UTC).isoformat(),
            "key_suffix": (key or "")[-4:],
            "model": model_name,
            "api_version": version,
            "turns": 0,
            "inline_images": 0,
            "thought_signatures": 0,
            "generation_config": {},
            "prompt": "",
            "status": 500,
        }
        # Should generation itself crash, the client still gets a 500 and the log shows it.
        status, answer = 500, GeminiError(500, "INTERNAL", "The emulator failed; see its stderr.").body
        try:
            status, answer = self._generate(model_name, key, body, record)
        finally:
            record["status"] = status
            self.emulator._record(record)
            self._send_json(status, answer)

    def _generate(self, model_name: str, key: str | None, body: bytes, record: JSON) -> tuple[int, JSON]:
        slow = _SLOW_KEY.match(key or "")
        latency_ms = self.emulator.latency_ms + (int(slow.group(1)) if slow else 0)
        if latency_ms > 0:
            time.sleep(latency_ms / 1000)  # only this request's thread waits
        request = _parse_json(body)
        if request is not None:
            _describe(request, record)
        try:
            if error := _key_error(key):
                raise error
            if request is None:
                raise _invalid_argument("Invalid JSON payload received. Expected a JSON object.")
            if error := self.emulator._spend_quota(key or "", model_name):
                raise error
            return 200, generate(model_name, request)
        except GeminiError as error:
            return error.code, error.body


def _parse_json(body: bytes) -> JSON | None:
    try:
        request = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return request if isinstance(request, dict) else None


def _describe(request: JSON, record: JSON) -> None:
    """Fill the request log entry with what the request asked for."""
    contents = request.get("contents")
    contents = [c for c in contents if isinstance(c, dict)] if isinstance(contents, list) else []
    record["turns"] = len(contents)
    record["inline_images"] = len(_inline_images(contents))
    # Gemini 3 wants earlier turns' thought signatures back; this shows whether a client kept them.
    record["thought_signatures"] = sum(
        1
        for content in contents
        for part in content.get("parts") or []
        if isinstance(part, dict) and (part.get("thoughtSignature") or part.get("thought_signature"))
    )
    record["generation_config"] = request.get("generationConfig") or {}
    record["prompt"] = _last_user_text(contents)


def _extra_model_resource(name: str) -> JSON:
    return {
        "name": f"models/{name}",
        "version": "001",
        "displayName": name,
        "description": f"{name} (listed by the emulator, unknown to NanoClone's catalogue)",
        "supportedGenerationMethods": ["generateContent"],
    }


def _model_resource(model: ImageModel) -> JSON:
    return {
        "name": f"models/{model.id}",
        "version": "001",
        "displayName": model.label,
        "description": f"{model.label}: {model.status} (served by the offline Gemini emulator)",
        "inputTokenLimit": 131072,
        "outputTokenLimit": 32768,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
    }


class GeminiEmulator:
    """A Gemini API look-alike on a real socket; `port=0` picks a free port.

    Tests: `with GeminiEmulator() as emu: genai.Client(..., http_options=HttpOptions(base_url=emu.url))`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: int = 0,
        verbose: bool = False,
        minute_seconds: float = 60.0,
    ) -> None:
        self.latency_ms = latency_ms  # read per request, so it may be changed while serving
        self.verbose = verbose
        # The length of an `emu-rpm<N>-*` window: tests shorten Gemini's minute.
        self.minute_seconds = minute_seconds
        # What models.list shows besides/without the catalogue (for sync_models' tests).
        self.extra_models: list[str] = []
        self.hidden_models: set[str] = set()
        self._lock = threading.Lock()
        self._requests: list[JSON] = []
        self._cleared_at = ""  # requests that arrived before the last clear() are not logged
        # Requests per (project, model), and per (project, model, window) for per-minute keys.
        self._quota_used: dict[tuple[str, ...], int] = {}
        self._thread: threading.Thread | None = None
        self._serving = False
        # Bound now, so `url` is known (and the port taken) before serving starts.
        self._server = _Server((host, port))
        self._server.emulator = self

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[JSON]:
        """The generateContent requests received, oldest first (a copy)."""
        with self._lock:
            return [dict(r) for r in self._requests]

    def clear(self) -> None:
        """Forget the request log, and the requests still being answered (quota counters live on:
        quotas are per server lifetime)."""
        with self._lock:
            self._requests.clear()
            self._cleared_at = datetime.now(UTC).isoformat()

    def start(self) -> GeminiEmulator:
        """Serve in a background daemon thread."""
        self._serving = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(_POLL_SECONDS,), name="gemini-emulator", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (the management command)."""
        self._serving = True
        self._server.serve_forever(_POLL_SECONDS)

    def stop(self) -> None:
        # shutdown() waits for a serve loop to acknowledge; without one it would hang.
        if self._serving:
            self._server.shutdown()
            self._serving = False
        self._server.server_close()
        self._server.close_connections()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> GeminiEmulator:
        return self if self._serving else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _record(self, entry: JSON) -> None:
        # Logged once answered, but ordered by arrival: concurrent requests finish out of order.
        with self._lock:
            if str(entry["time"]) >= self._cleared_at:
                bisect.insort(self._requests, entry, key=lambda r: str(r["time"]))

    def _spend_quota(self, key: str, model: str) -> GeminiError | None:
        """The 429 a key's quota gives for this request, or None (then the request is counted).

        Quotas are per project and model, as Gemini's: keys with the same `-p<ID>-` part share them.
        """
        if key.startswith("emu-429bare-"):
            return GeminiError(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).")
        if key.startswith("emu-429-"):
            return _quota_exhausted(model, 0)
        if key.startswith("emu-free-") and not model_for_size(model).free_tier:
            return _quota_exhausted(model, 0)  # Pro has no free tier: limit 0
        project_part = _PROJECT_PART.search(key)
        project = f"project {project_part.group(1)}" if project_part else f"key {key}"
        if match := _RPM_KEY.match(key):
            now = time.time()
            window = int(now // self.minute_seconds)
            rest = (window + 1) * self.minute_seconds - now
            return self._count(
                (project, model, str(window)), int(match.group(1)), model, PER_MINUTE, round(rest + 0.05, 1)
            )
        if match := _QUOTA_KEY.match(key):
            return self._count((project, model), int(match.group(1)), model, PER_DAY, 38.0)
        return None

    def _count(
        self, counter: tuple[str, ...], limit: int, model: str, quota_id: str, retry_seconds: float
    ) -> GeminiError | None:
        with self._lock:
            used = self._quota_used.get(counter, 0)
            if used >= limit:
                return _quota_exhausted(model, limit, quota_id, retry_seconds)
            self._quota_used[counter] = used + 1
        return None
