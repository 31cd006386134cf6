"""The one place NanoClone talks to Gemini, through google-genai, for one leased credential.

An AI Studio key calls the Gemini API; a Vertex AI express-mode key and a service account call
Vertex AI (google-genai's vertexai=True), a service account with access tokens google-auth gets and
keeps until they expire. Every call of a credential, its token requests too, goes through its proxy.
What Gemini answers is read by keys.gemini.answers, into a GeminiAnswer or the pool's vocabulary
of failures (keys.pool), so pool.report() can apply the one failure policy.
"""

from __future__ import annotations

import binascii
import io
import json
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeVar

import httpx2
import pybase64
import requests
from django.conf import settings
from google import genai
from google.auth import exceptions as auth_exceptions
from google.auth.transport.requests import Request as TokenRequest
from google.genai import errors, types
from google.oauth2 import service_account

from keys.catalogue import MODELS
from keys.gemini import answers
from keys.gemini.answers import GeminiAnswer as GeminiAnswer  # what generate() gives the pipeline
from keys.gemini.answers import GeneratedImage as GeneratedImage
from keys.gemini.answers import standard_base64 as standard_base64  # the Gemini door's, for what callers send
from keys.models import ApiKey
from keys.pool import GeminiError, KeyRejected, KeyUnreachable, Lease, UpstreamUnavailable

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"  # the scope Vertex AI's calls need
Result = TypeVar("Result")


@dataclass
class Turn:
    role: str  # "user" or "model"
    text: str = ""
    text_signature: str = ""
    # (bytes, mime type, thought signature or "")
    images: list[tuple[bytes, str, str]] = field(default_factory=list)


def input_tokens(turns: list[Turn], text: str = "", images: int = 0) -> int:
    """A call's input tokens (its turns, and more `text` and `images`) before Gemini counts them, as
    it counts: about a quarter of the text's characters, and 258 tokens per image. Pacing admits the
    call against an input-tokens-per-minute limit with it."""
    return sum(len(turn.text) // 4 + 258 * len(turn.images) for turn in turns) + len(text) // 4 + 258 * images


@dataclass(frozen=True)
class Options:
    """Per-request generation options (empty: Gemini's default)."""

    aspect_ratio: str = ""
    resolution: str = ""
    thinking_level: str = ""  # minimal / medium / high, where the model offers it
    grounding: bool = False  # Google Search grounding

    def config(self, batch: bool = False) -> types.GenerateContentConfig:
        """The call's config; `batch`: a batch item's, which holds only what goes on the wire."""
        return types.GenerateContentConfig(
            # The answer's JSON as Gemini sent it, not google-genai's models of it: _answer() reads
            # the few fields it needs, and the image's base64 stays text the doors answer with.
            should_return_http_response=None if batch else True,
            # No Python functions for the SDK to call: with its automatic function calling on, it
            # deep-copies the config for that loop on every call (0.17 ms of a 2.2 ms call).
            automatic_function_calling=None if batch else types.AutomaticFunctionCallingConfig(disable=True),
            response_modalities=["TEXT", "IMAGE"],
            image_config=types.ImageConfig(aspect_ratio=self.aspect_ratio or None, image_size=self.resolution or None),
            thinking_config=types.ThinkingConfig(thinking_level=types.ThinkingLevel(self.thinking_level.upper()))
            if self.thinking_level
            else None,
            tools=[types.Tool(google_search=types.GoogleSearch())] if self.grounding else None,
        )


_clients_lock = threading.Lock()


class _ServiceAccountCredentials(service_account.Credentials):
    """A service account's credentials whose token requests go through its proxy: google-genai
    refreshes with a plain Request of its own, which knows nothing of the proxy."""

    token_request: TokenRequest

    def refresh(self, request: Any) -> None:
        super().refresh(self.token_request)


def _token_request(proxy: str) -> TokenRequest:
    session = requests.Session()
    if proxy:
        session.proxies = {"http": proxy, "https": proxy}
        session.trust_env = False  # this proxy, not one from the environment
    return TokenRequest(session)


@dataclass(frozen=True)
class _Connection:
    client: genai.Client
    credentials: _ServiceAccountCredentials | None = None  # a service account's, refreshed on a 401


@lru_cache(maxsize=256)
def _connect(
    kind: str, secret: str, location: str, base_url: str, proxy: str, api_version: str, timeout_ms: int
) -> _Connection:
    # One client (and its connection pool) per credential and endpoint, reused across requests. The
    # version and timeout are part of the cache key so a changed setting never meets a stale client.
    client_args = {"proxy": proxy} if proxy else None
    if kind == ApiKey.Kind.AI_STUDIO:
        options = types.HttpOptions(
            base_url=base_url, api_version=api_version, timeout=timeout_ms, client_args=client_args
        )
        return _Connection(genai.Client(api_key=secret, http_options=options))
    # Vertex AI: google-genai's own API version for it, and its endpoint for the location unless a
    # base URL is set.
    options = types.HttpOptions(base_url=base_url or None, timeout=timeout_ms, client_args=client_args)
    if kind == ApiKey.Kind.VERTEX_EXPRESS:
        return _Connection(genai.Client(vertexai=True, api_key=secret, http_options=options))
    info = json.loads(secret)
    credentials = _ServiceAccountCredentials.from_service_account_info(info, scopes=[CLOUD_PLATFORM])
    credentials.token_request = _token_request(proxy)
    client = genai.Client(
        vertexai=True,
        project=info["project_id"],
        location=location or "global",
        credentials=credentials,
        http_options=options,
    )
    return _Connection(client, credentials)


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
    contents = [_content(turn) for turn in turns]
    upstream = _upstream_id(lease, model)
    started = time.monotonic()
    try:
        response = _call(
            lease,
            lambda client: client.models.generate_content(model=upstream, contents=contents, config=options.config()),
        )
        raw = response.sdk_http_response.body if response.sdk_http_response else None
        answer = answers.read(raw or b"")
    except GeminiError as error:
        error.latency_ms = round((time.monotonic() - started) * 1000)
        raise
    answer.latency_ms = round((time.monotonic() - started) * 1000)
    return answer


@dataclass(frozen=True)
class BatchItem:
    """One request of a batch: `key` names it in the results (a job's id and image slot)."""

    key: str
    turns: list[Turn]
    options: Options


@dataclass
class BatchStatus:
    """A batch as Google sees it: its state (BATCH_STATE_...), and once it succeeded each item's
    answer, or the pool's exception for the item's error, by key."""

    state: str
    error: str = ""
    results: dict[str, GeminiAnswer | GeminiError] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.state in BATCH_ENDED


# Google's end states of a batch (the Gemini API's BATCH_STATE_*; google-genai says JOB_STATE_*).
BATCH_SUCCEEDED = "BATCH_STATE_SUCCEEDED"
BATCH_ENDED = {BATCH_SUCCEEDED, "BATCH_STATE_FAILED", "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED"}


# Google takes a batch's inline requests up to 20 MB in all; a larger batch goes as a JSONL file
# through the Files API (with room for the JSON around the requests).
INLINE_BATCH_BYTES = 18 * 1024 * 1024


def submit_batch(lease: Lease, model: str, items: list[BatchItem], display_name: str) -> str:
    """Send `items` as one batch with an AI Studio key, inline or (beyond INLINE_BATCH_BYTES) as a
    JSONL file; Google's name for the batch."""
    src: list[types.InlinedRequest] | str
    if sum(_request_bytes(item) for item in items) <= INLINE_BATCH_BYTES:
        src = [
            types.InlinedRequest(
                contents=[_content(turn) for turn in item.turns],
                config=item.options.config(batch=True),
                metadata={"key": item.key},
            )
            for item in items
        ]
    else:
        lines = io.BytesIO()
        for item in items:
            lines.write(json.dumps({"key": item.key, "request": _wire_request(item)}).encode() + b"\n")
        lines.seek(0)
        upload = types.UploadFileConfig(mime_type="application/jsonl", display_name=display_name)
        src = str(_call(lease, lambda client: client.files.upload(file=lines, config=upload)).name)
    created = _call(
        lease,
        lambda client: client.batches.create(
            model=_upstream_id(lease, model), src=src, config=types.CreateBatchJobConfig(display_name=display_name)
        ),
    )
    return str(created.name)


def _request_bytes(item: BatchItem) -> int:
    """About what a request weighs in JSON: its images in base64, its text."""
    return sum(len(data) * 4 // 3 + 64 for turn in item.turns for data, _, _ in turn.images) + sum(
        len(turn.text) + 64 for turn in item.turns
    )


def _wire_request(item: BatchItem) -> dict[str, Any]:
    """A batch item as a GenerateContentRequest on the wire (camelCase), for a JSONL line."""
    options = item.options
    config: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
    image = {"aspectRatio": options.aspect_ratio, "imageSize": options.resolution}
    if image := {name: value for name, value in image.items() if value}:
        config["imageConfig"] = image
    if options.thinking_level:
        config["thinkingConfig"] = {"thinkingLevel": options.thinking_level.upper()}
    request = {
        "contents": [_content(turn).model_dump(mode="json", by_alias=True, exclude_none=True) for turn in item.turns],
        "generationConfig": config,
    }
    if options.grounding:
        request["tools"] = [{"googleSearch": {}}]
    return request


def find_batch(lease: Lease, display_name: str) -> str | None:
    """The name of the key's batch called `display_name`, if Google has one (newest first)."""
    return _call(
        lease,
        lambda client: next(
            (str(job.name) for job in client.batches.list() if job.display_name == display_name),
            None,
        ),
    )


def get_batch(lease: Lease, name: str) -> BatchStatus:
    """The batch `name` as Google sees it, with its items' answers read once it succeeded."""
    job = _call(lease, lambda client: client.batches.get(name=name))
    state = _BATCH_STATES.get(str(job.state.value if job.state else ""), str(job.state or ""))
    status = BatchStatus(state, error=str(job.error.message or "") if job.error else "")
    if state == BATCH_SUCCEEDED and job.dest is not None:
        for item in job.dest.inlined_responses or []:
            response = item.response.model_dump_json(by_alias=True, exclude_none=True) if item.response else None
            error = item.error.model_dump(exclude_none=True) if item.error else None
            status.results[str((item.metadata or {}).get("key", ""))] = _item_answer(response, error)
        if file := job.dest.file_name:  # a JSONL file of results, one line per request, on disk while read
            with tempfile.TemporaryFile() as lines:
                _call(lease, lambda client: client.files.download(file=file, destination=lines))
                lines.seek(0)
                for line in filter(bytes.strip, lines):
                    result = json.loads(line)
                    response = json.dumps(result["response"]) if isinstance(result.get("response"), dict) else None
                    error = result["error"] if isinstance(result.get("error"), dict) else None
                    status.results[str(result.get("key", ""))] = _item_answer(response, error)
    return status


def cancel_batch(lease: Lease, name: str) -> None:
    _call(lease, lambda client: client.batches.cancel(name=name))


# google-genai's names for the Gemini API's batch states.
_BATCH_STATES = {
    f"JOB_STATE_{end}": f"BATCH_STATE_{end}"
    for end in ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED")
}


def _item_answer(response: str | None, error: dict[str, Any] | None) -> GeminiAnswer | GeminiError:
    """A batch item's answer (its response's JSON), read as an online call's would be (the same
    reader, the same refusals), or the pool's exception for its error."""
    try:
        if response is not None:
            return answers.read(response)
        said = error or {}
        raise errors.APIError(int(said.get("code") or 500), {"error": said})
    except errors.APIError as failed:
        return answers.sorted_error(failed)
    except GeminiError as failed:
        return failed


def _upstream_id(lease: Lease, model: str) -> str:
    known = MODELS.get(model)
    return known.upstream_id(lease.is_vertex) if known else model


def _connection(lease: Lease) -> _Connection:
    # Under the lock, so concurrent image threads of one job share one client instead of racing
    # lru_cache into building several (the extras would be closed when collected).
    with _clients_lock:
        return _connect(
            lease.kind,
            lease.secret,
            lease.location,
            lease.base_url or (settings.VERTEX_BASE_URL if lease.is_vertex else settings.GEMINI_BASE_URL),
            lease.proxy,
            settings.GEMINI_API_VERSION,
            int(settings.GEMINI_TIMEOUT_SECONDS * 1000),  # HttpOptions.timeout is in milliseconds
        )


def _call(lease: Lease, call: Callable[[genai.Client], Result]) -> Result:
    """One call with the lease's client (held for the call: Client.__del__ closes its connections),
    its errors sorted for the pool. A service account whose token Google no longer takes (a 401:
    revoked, or expired before its time) gets a new token, once, and the call goes on."""
    connection = _connection(lease)
    with _sorted_errors():
        try:
            return call(connection.client)
        except errors.ClientError as error:
            if error.code != 401 or connection.credentials is None:
                raise
            connection.credentials.refresh(None)
            return call(connection.client)


@contextmanager
def _sorted_errors() -> Iterator[None]:
    """Turn what google-genai (and google-auth, signing a service account in) raise into what it
    means for the key pool."""
    try:
        yield
    except errors.APIError as error:
        raise answers.sorted_error(error) from error
    except auth_exceptions.RefreshError as error:  # Google's token endpoint refused the service account
        said = str(error.args[0]) if error.args else str(error)
        if getattr(error, "retryable", False):
            raise UpstreamUnavailable(f"Google's token endpoint: {said}") from error
        raise KeyRejected(f"Google refused the service account's sign-in: {said}") from error
    except auth_exceptions.TransportError as error:  # the token endpoint, or the proxy to it, out of reach
        raise KeyUnreachable(f"token request failed: {error}") from error
    except (httpx2.ConnectError, httpx2.ProxyError) as error:  # DNS, refused, TLS, the proxy: nothing reached Gemini
        raise KeyUnreachable(f"{type(error).__name__}: {error}") from error
    except (httpx2.TransportError, TimeoutError) as error:
        raise UpstreamUnavailable(f"{type(error).__name__}: {error}") from error


def check_key(lease: Lease, model: str) -> None:
    """Ask Gemini about a model with this credential (models.get): proves it works without spending
    image quota. Raises the same exceptions as generate()."""
    upstream = _upstream_id(lease, model)
    _call(lease, lambda client: client.models.get(model=upstream))


def list_models(lease: Lease) -> list[str]:
    """The model ids the Gemini API's models.list shows an AI Studio key's project. Raises the pool's
    exceptions."""
    return _call(lease, lambda client: [(model.name or "").removeprefix("models/") for model in client.models.list()])
