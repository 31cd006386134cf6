"""The one place NanoClone talks to Gemini, through google-genai, for one leased key.

What Gemini answers is read by keys.gemini.answers, into a GeminiAnswer or the pool's vocabulary
of failures (keys.pool), so pool.report() can apply the one failure policy.
"""

from __future__ import annotations

import binascii
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache

import httpx2
import pybase64
from django.conf import settings
from google import genai
from google.genai import errors, types

from keys.gemini import answers
from keys.gemini.answers import GeminiAnswer as GeminiAnswer  # what generate() gives the pipeline
from keys.gemini.answers import GeneratedImage as GeneratedImage
from keys.gemini.answers import standard_base64 as standard_base64  # the Gemini door's, for what callers send
from keys.pool import GeminiError, KeyUnreachable, Lease, UpstreamUnavailable


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


_clients_lock = threading.Lock()


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
                thought_signature=_signature(turn.text_signature),
            )
        )
    for data, mime_type, signature in turn.images:
        parts.append(
            types.Part(
                inline_data=types.Blob(data=data, mime_type=mime_type),
                thought_signature=_signature(signature),
            )
        )
    return types.Content(role=turn.role, parts=parts)


def _signature(text: str) -> bytes | None:
    """A kept thought signature as the bytes Gemini gave; one that isn't base64 is left out rather
    than failing the call (Gemini then answers for itself whether it needs it)."""
    try:
        return pybase64.b64decode(text, validate=True) if text else None
    except binascii.Error:
        return None


def generate(lease: Lease, model: str, turns: list[Turn], options: Options) -> GeminiAnswer:
    client = _client_for(lease)  # held for the call: Client.__del__ closes its HTTP connections
    started = time.monotonic()
    try:
        with _sorted_errors():
            response = client.models.generate_content(
                model=model, contents=[_content(turn) for turn in turns], config=options.config()
            )
        raw = response.sdk_http_response.body if response.sdk_http_response else None
        answer = answers.read(raw or b"")
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
        raise answers.sorted_error(error) from error
    except httpx2.ConnectError as error:  # DNS, refused, TLS: nothing reached Gemini
        raise KeyUnreachable(f"{type(error).__name__}: {error}") from error
    except (httpx2.TransportError, TimeoutError) as error:
        raise UpstreamUnavailable(f"{type(error).__name__}: {error}") from error


def check_key(lease: Lease, model: str) -> None:
    """Ask Gemini about a model with this key (models.get): proves the key works without spending image quota.

    Raises the same exceptions as generate().
    """
    client = _client_for(lease)  # held for the call: Client.__del__ closes its HTTP connections
    with _sorted_errors():
        client.models.get(model=model)


def list_models(lease: Lease) -> list[str]:
    """The model ids Gemini's models.list shows this key's project. Raises the pool's exceptions."""
    client = _client_for(lease)  # held for the call: Client.__del__ closes its HTTP connections
    with _sorted_errors():
        return [(model.name or "").removeprefix("models/") for model in client.models.list()]
