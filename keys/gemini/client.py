"""The one place NanoClone talks to Gemini, through google-genai, for one leased key.

Errors are sorted into the pool's vocabulary (keys.pool: KeyExhausted, KeyRejected,
UpstreamUnavailable, RequestRejected, Refused), so pool.report() can apply the one failure policy.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import httpx2
import orjson
import pybase64
from django.conf import settings
from google import genai
from google.genai import errors, types

from keys.pool import (
    CallUsage,
    GeminiError,
    KeyExhausted,
    KeyRejected,
    KeyUnreachable,
    Lease,
    Refused,
    RequestRejected,
    UpstreamUnavailable,
)


@dataclass
class Turn:
    role: str  # "user" or "model"
    text: str = ""
    text_signature: str = ""
    # (bytes, mime type, thought signature or "")
    images: list[tuple[bytes, str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Options:
    """Per-request generation options (empty: Gemini's default)."""

    aspect_ratio: str = ""
    resolution: str = ""
    thinking_level: str = ""  # minimal / medium / high, where the model offers it
    grounding: bool = False  # Google Search grounding

    def config(self) -> types.GenerateContentConfig:
        return types.GenerateContentConfig(
            # The answer's JSON as Gemini sent it, not google-genai's models of it: _answer() reads
            # the few fields it needs, and the image's base64 stays text the doors answer with.
            should_return_http_response=True,
            # No Python functions for the SDK to call: with its automatic function calling on, it
            # deep-copies the config for that loop on every call (0.17 ms of a 2.2 ms call).
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
            response_modalities=["TEXT", "IMAGE"],
            image_config=types.ImageConfig(aspect_ratio=self.aspect_ratio or None, image_size=self.resolution or None),
            thinking_config=types.ThinkingConfig(thinking_level=types.ThinkingLevel(self.thinking_level.upper()))
            if self.thinking_level
            else None,
            tools=[types.Tool(google_search=types.GoogleSearch())] if self.grounding else None,
        )


@dataclass
class GeneratedImage:
    base64: str  # the image as Gemini sent it (standard alphabet): answers reuse it
    mime_type: str
    thought_signature: str

    @cached_property
    def data(self) -> bytes:
        # pybase64's SIMD decoder: 0.015 ms for a 1K image's 270 KB, where base64's takes 0.9 ms.
        # It needs clean input to go fast; anything else decodes as base64.b64decode would.
        try:
            return pybase64.b64decode(self.base64, validate=True)
        except binascii.Error:
            return pybase64.b64decode(self.base64)


@dataclass
class GeminiAnswer:
    text: str
    text_signature: str
    images: list[GeneratedImage]
    prompt_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    model_version: str
    # Google Search grounding: {"sources": [{"title", "uri"}], "queries": [...]}, or None.
    grounding: dict[str, list[Any]] | None = None
    thinking_tokens: int | None = None
    latency_ms: int | None = None  # how long the call took

    @property
    def usage(self) -> CallUsage:
        """What the call used, for the usage ledger (pool.report)."""
        return CallUsage(
            len(self.images), self.prompt_tokens, self.output_tokens, self.thinking_tokens, self.latency_ms
        )


_clients_lock = threading.Lock()
_DELAY = re.compile(r"^(\d+(?:\.\d+)?)s$")  # RetryInfo.retryDelay, a protobuf Duration: "38s", "0.5s"


@lru_cache(maxsize=256)
def _client(secret: str, base_url: str, api_version: str, timeout_ms: int) -> genai.Client:
    # One client (and its connection pool) per key and endpoint, reused across requests. The
    # version and timeout are part of the cache key so a changed setting never meets a stale client.
    return genai.Client(
        api_key=secret,
        http_options=types.HttpOptions(base_url=base_url, api_version=api_version, timeout=timeout_ms),
    )


def _content(turn: Turn) -> types.Content:
    parts: list[types.Part] = []
    if turn.text:
        parts.append(
            types.Part(
                text=turn.text,
                thought_signature=base64.b64decode(turn.text_signature) if turn.text_signature else None,
            )
        )
    for data, mime_type, signature in turn.images:
        parts.append(
            types.Part(
                inline_data=types.Blob(data=data, mime_type=mime_type),
                thought_signature=base64.b64decode(signature) if signature else None,
            )
        )
    return types.Content(role=turn.role, parts=parts)


def _exhausted(error: errors.APIError) -> KeyExhausted:
    """What a 429 says is spent: QuotaFailure's quota ids (the longest-lasting one wins) and RetryInfo's delay."""
    quota_ids: list[str] = []
    retry_after: dt.timedelta | None = None
    body = error.details if isinstance(error.details, dict) else {}
    for detail in body.get("error", {}).get("details", []) or []:
        if not isinstance(detail, dict):
            continue
        for violation in detail.get("violations", []) or []:
            if isinstance(violation, dict) and violation.get("quotaId"):
                quota_ids.append(str(violation["quotaId"]))
        if match := _DELAY.match(str(detail.get("retryDelay") or "")):
            retry_after = dt.timedelta(seconds=float(match.group(1)))
    # A per-day quota outlasts a per-minute one: rest for the one that frees up last.
    quota_id = next((q for q in quota_ids if "PerDay" in q), quota_ids[0] if quota_ids else "")
    found = [f"quota {q}" for q in quota_ids]
    if retry_after is not None:
        found.append(f"retry in {retry_after.total_seconds():g}s")
    return KeyExhausted(", ".join(found) or (error.message or "RESOURCE_EXHAUSTED"), quota_id, retry_after)


def _is_bad_key(error: errors.APIError) -> bool:
    if error.code in (401, 403):
        return True
    text = json.dumps(error.details) if error.details else ""
    return error.code == 400 and ("API_KEY_INVALID" in text or "API key not valid" in (error.message or ""))


def generate(lease: Lease, model: str, turns: list[Turn], options: Options) -> GeminiAnswer:
    client = _client_for(lease)  # held for the call: Client.__del__ closes its HTTP connections
    started = time.monotonic()
    try:
        with _sorted_errors():
            response = client.models.generate_content(
                model=model, contents=[_content(turn) for turn in turns], config=options.config()
            )
        answer = _answer(response)
    except GeminiError as error:
        error.latency_ms = round((time.monotonic() - started) * 1000)
        raise
    answer.latency_ms = round((time.monotonic() - started) * 1000)
    return answer


def _client_for(lease: Lease) -> genai.Client:
    # Under the lock, so concurrent image threads of one job share one client instead of racing
    # lru_cache into building several (the extras would be closed when collected).
    with _clients_lock:
        return _client(
            lease.secret,
            lease.base_url or settings.GEMINI_BASE_URL,
            settings.GEMINI_API_VERSION,
            int(settings.GEMINI_TIMEOUT_SECONDS * 1000),  # HttpOptions.timeout is in milliseconds
        )


@contextmanager
def _sorted_errors() -> Iterator[None]:
    """Turn what google-genai raises into what it means for the key pool."""
    try:
        yield
    except errors.APIError as error:
        raise _sorted(error) from error
    except httpx2.ConnectError as error:  # DNS, refused, TLS: nothing reached Gemini
        raise KeyUnreachable(f"{type(error).__name__}: {error}") from error
    except (httpx2.TransportError, TimeoutError) as error:
        raise UpstreamUnavailable(f"{type(error).__name__}: {error}") from error


def _sorted(error: errors.APIError) -> Exception:
    """What a Gemini error means for the key pool."""
    summary = f"{error.code} {error.status or ''}: {error.message or ''}".strip()
    if error.code == 429:
        return _exhausted(error)
    if _is_bad_key(error):
        return KeyRejected(summary)
    if error.code >= 500 or error.code == 408:
        return UpstreamUnavailable(summary)
    return RequestRejected(error.message or summary)


def check_key(lease: Lease, model: str) -> None:
    """Ask Gemini about a model with this key (models.get): proves the key works without spending image quota.

    Raises the same exceptions as generate().
    """
    client = _client_for(lease)  # held for the call: Client.__del__ closes its HTTP connections
    with _sorted_errors():
        client.models.get(model=model)


def _answer(response: types.GenerateContentResponse) -> GeminiAnswer:
    """What Gemini's JSON answer (GenerateContentResponse, camelCase as on the wire) holds for us."""
    raw = response.sdk_http_response.body if response.sdk_http_response else None
    body: dict[str, Any] = orjson.loads(raw) if raw else {}  # twice json's speed on an image's base64
    if reason := (body.get("promptFeedback") or {}).get("blockReason"):
        raise Refused("blocked", f"Gemini blocked this prompt ({reason}). Rephrase it and try again.")
    candidate: dict[str, Any] = (body.get("candidates") or [{}])[0] or {}
    texts: list[str] = []
    text_signature = ""
    images: list[GeneratedImage] = []
    for part in (candidate.get("content") or {}).get("parts") or []:
        signature = standard_base64(part.get("thoughtSignature") or "")
        inline = part.get("inlineData") or {}
        if inline.get("data"):
            images.append(
                GeneratedImage(standard_base64(inline["data"]), inline.get("mimeType") or "image/png", signature)
            )
        elif part.get("text") and not part.get("thought"):
            texts.append(part["text"])
            text_signature = text_signature or signature
    text = "\n".join(texts).strip()
    if not images:
        reason = str(candidate.get("finishReason") or "")
        if reason == "IMAGE_SAFETY":
            raise Refused(
                "image_safety",
                "Gemini withheld the image for safety reasons (IMAGE_SAFETY). Try a different prompt.",
                text,
            )
        if reason in ("SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII"):
            raise Refused("blocked", f"Gemini stopped for safety reasons ({reason}). Rephrase the prompt.", text)
        raise Refused(
            "no_image",
            "Gemini answered with text only and no image"
            + (f': "{text[:300]}"' if text else "")
            + ". Ask explicitly for an image and try again.",
            text,
        )
    usage = body.get("usageMetadata") or {}
    return GeminiAnswer(
        text=text,
        text_signature=text_signature,
        images=images,
        prompt_tokens=usage.get("promptTokenCount"),
        output_tokens=usage.get("candidatesTokenCount"),
        total_tokens=usage.get("totalTokenCount"),
        thinking_tokens=usage.get("thoughtsTokenCount"),
        model_version=body.get("modelVersion") or "",
        grounding=_grounding(candidate.get("groundingMetadata")),
    )


def standard_base64(text: str) -> str:
    """Base64 in the standard alphabet, padded: Google's JSON takes and may send bytes in either
    alphabet (google-genai sends the URL-safe one); NanoClone stores and answers the standard one."""
    if "-" in text or "_" in text:
        text = text.replace("-", "+").replace("_", "/")
    return text + "=" * (-len(text) % 4)


def _grounding(metadata: dict[str, Any] | None) -> dict[str, list[Any]] | None:
    """The web sources and search queries behind a grounded answer, as the answer stores them."""
    if not metadata:
        return None
    sources = [
        {"title": chunk["web"].get("title") or "", "uri": chunk["web"].get("uri") or ""}
        for chunk in metadata.get("groundingChunks") or []
        if chunk.get("web") is not None
    ]
    queries = list(metadata.get("webSearchQueries") or [])
    return {"sources": sources, "queries": queries} if sources or queries else None


def list_models(lease: Lease) -> list[str]:
    """The model ids Gemini's models.list shows this key's project. Raises the pool's exceptions."""
    client = _client_for(lease)  # held for the call: Client.__del__ closes its HTTP connections
    with _sorted_errors():
        return [(model.name or "").removeprefix("models/") for model in client.models.list()]
