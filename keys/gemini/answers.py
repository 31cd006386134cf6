"""The one reader of Gemini's answers: what each answer Google's servers (or a relay in front of them)
send means for the request and for the key that made the call.

read() takes a 200's body and gives a GeminiAnswer, or raises Refused (Gemini answered without an
image, with Google's reason) or UnreadableAnswer (the answer can't be read: not JSON, a cut-off or
mislabelled image...). sorted_error() takes what google-genai raised for any other status and gives
the pool's vocabulary (keys.pool: KeyExhausted, KeyRejected, ModelUnavailable, LocationRefused,
UpstreamUnavailable, RequestRejected). docs/gemini-answers.md is the table of every outcome.
"""

from __future__ import annotations

import binascii
import datetime as dt
import io
import re
import struct
from dataclasses import dataclass
from typing import Any

import orjson
import PIL.Image
import pybase64
from google.genai import errors

from keys.pool import (
    CallUsage,
    GeminiError,
    KeyExhausted,
    KeyRejected,
    LocationRefused,
    ModelUnavailable,
    Refused,
    RequestRejected,
    UnreadableAnswer,
    UpstreamUnavailable,
)

JSON = dict[str, Any]

_DELAY = re.compile(r"^(\d+(?:\.\d+)?)s$")  # RetryInfo.retryDelay, a protobuf Duration: "38s", "0.5s"
# An image a relay put into a text part (sometimes inside Markdown: ![image](data:...)).
_DATA_URI = re.compile(r"data:(image/[\w.+-]+);base64,([A-Za-z0-9+/=_-]+)")
_TAGS = re.compile(r"<[^>]+>")
# A 429 from something in front of Gemini (a proxy's own rate limit) says nothing of a quota.
_PROXY_REST = dt.timedelta(seconds=60)
# Vertex AI's 429 points here: its models run on capacity shared by every customer (dynamic shared
# quota), so the 429 says the capacity is busy, with no quota id, limit or retry delay.
VERTEX_429 = "vertex-ai/generative-ai/docs/error-code-429"

# finishReason -> the refusal it is, when the candidate carries no image.
_IMAGE_SAFETY = frozenset({"IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT"})
_SAFETY = frozenset({"SAFETY", "PROHIBITED_CONTENT", "SPII", "BLOCKLIST"})
_RECITATION = frozenset({"RECITATION", "IMAGE_RECITATION"})


@dataclass
class GeneratedImage:
    base64: str  # the image as Gemini sent it (standard alphabet, clean): answers reuse it
    mime_type: str  # what the bytes are, whatever the answer said
    thought_signature: str
    data: bytes  # decoded, checked whole
    width: int = 0
    height: int = 0


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


# --- a 200 ------------------------------------------------------------------------------------------


def read(body: bytes | str) -> GeminiAnswer:
    """What a 200's body (GenerateContentResponse, camelCase as on the wire) holds for us."""
    answer = _json(body)
    usage = answer.get("usageMetadata") or {}
    spent = CallUsage(
        0, usage.get("promptTokenCount"), usage.get("candidatesTokenCount"), usage.get("thoughtsTokenCount")
    )
    feedback = answer.get("promptFeedback") or {}
    if reason := feedback.get("blockReason"):
        said = str(feedback.get("blockReasonMessage") or "")
        raise Refused(
            "blocked",
            f"Gemini blocked this prompt ({reason}){_quoted(said)}. Rephrase it and try again.",
            refusal={"blockReason": str(reason), "message": said},
            usage=spent,
        )
    candidate: JSON = (answer.get("candidates") or [{}])[0] or {}
    texts: list[str] = []
    text_signature = ""
    images: list[GeneratedImage] = []
    for part in (candidate.get("content") or {}).get("parts") or []:
        if not isinstance(part, dict):
            continue
        signature = _signature(part.get("thoughtSignature"))
        inline = part.get("inlineData") or part.get("inline_data") or {}
        if inline.get("data"):
            images.append(_image(str(inline["data"]), signature))
        elif isinstance(part.get("text"), str) and not part.get("thought"):
            text = part["text"]
            for found in _DATA_URI.finditer(text):  # an image a relay sent as text
                images.append(_image(found.group(2), signature))
            text = _DATA_URI.sub("", text).replace("![image]()", "").strip()
            if text:
                texts.append(text)
                text_signature = text_signature or signature
    text = "\n".join(texts).strip()
    if not images:
        raise _refusal(candidate, text, spent)
    return GeminiAnswer(
        text=text,
        text_signature=text_signature,
        images=images,
        prompt_tokens=usage.get("promptTokenCount"),
        output_tokens=usage.get("candidatesTokenCount"),
        total_tokens=usage.get("totalTokenCount"),
        thinking_tokens=usage.get("thoughtsTokenCount"),
        model_version=str(answer.get("modelVersion") or ""),
        grounding=_grounding(candidate.get("groundingMetadata")),
    )


def _json(body: bytes | str) -> JSON:
    """The answer's JSON object: a relay may send Gemini's answer as a list, or no JSON at all."""
    try:
        answer = orjson.loads(body) if body else None  # twice json's speed on an image's base64
    except orjson.JSONDecodeError:
        answer = None
    if isinstance(answer, list) and answer and all(isinstance(chunk, dict) for chunk in answer):
        return _merged(answer)
    if not isinstance(answer, dict):
        raise UnreadableAnswer(
            f"Gemini's answer is not JSON ({_excerpt(body.encode() if isinstance(body, str) else body)})"
        )
    return answer


def _merged(chunks: list[JSON]) -> JSON:
    """Streamed chunks as one answer: their parts in order, the last usage, feedback and finish."""
    parts: list[Any] = []
    merged: JSON = {}
    for chunk in chunks:
        candidate = (chunk.get("candidates") or [{}])[0] or {}
        parts += (candidate.get("content") or {}).get("parts") or []
        merged.update({name: value for name, value in chunk.items() if value and name != "candidates"})
        last = candidate
    merged["candidates"] = [{**last, "content": {"role": "model", "parts": parts}}]
    return merged


def _image(text: str, signature: str) -> GeneratedImage:
    """An image part's data, decoded and checked whole; its type is what its bytes say."""
    base64 = standard_base64(text)
    try:
        # pybase64's SIMD decoder: 0.015 ms for a 1K image's 270 KB, where base64's takes 0.9 ms.
        data = pybase64.b64decode(base64, validate=True)
    except binascii.Error:
        try:  # stray characters (line breaks...): decoded as base64.b64decode would, sent on clean
            data = pybase64.b64decode(base64)
        except (binascii.Error, ValueError) as error:
            raise UnreadableAnswer(
                f"Gemini's image could not be read: its base64 is cut off or damaged ({error})"
            ) from error
        base64 = pybase64.b64encode(data).decode()
    mime_type = image_type(data)
    if mime_type is None:
        raise UnreadableAnswer(
            f"Gemini's image could not be read: its {len(data):,} bytes are not a PNG, JPEG or WEBP image"
        )
    if not _whole(data, mime_type):
        raise UnreadableAnswer(
            f"Gemini's image could not be read: the {mime_type} is cut off after {len(data):,} bytes"
        )
    try:
        # Its header, and for a PNG every chunk's checksum: storing the image reads no more than this.
        with PIL.Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            image.verify()
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error) as error:  # Pillow's kinds of damage
        raise UnreadableAnswer(f"Gemini's image could not be read: the {mime_type} is damaged ({error})") from error
    return GeneratedImage(base64, mime_type, signature, data, width, height)


def image_type(data: bytes) -> str | None:
    """The image type its first bytes say, whatever a label said."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _whole(data: bytes, mime_type: str) -> bool:
    """Whether the image ends where its format says it ends: a cut-off answer doesn't, and checking
    the end costs nothing next to decoding the pixels."""
    if mime_type == "image/png":
        return data.endswith(b"IEND\xaeB`\x82")
    if mime_type == "image/jpeg":
        return data.rstrip(b"\0")[-2:] == b"\xff\xd9"
    return int.from_bytes(data[4:8], "little") + 8 <= len(data)  # RIFF: the size after its first 8 bytes


def _signature(value: Any) -> str:
    """A thoughtSignature as NanoClone keeps it (standard base64), or "" when there is none or it
    isn't base64 at all (sent back as it came, Gemini would refuse the next turn)."""
    if not value or not isinstance(value, str):
        return ""
    signature = standard_base64(value)
    try:
        pybase64.b64decode(signature, validate=True)
    except binascii.Error:
        return ""
    return signature


def standard_base64(text: str) -> str:
    """Base64 in the standard alphabet, padded: Google's JSON takes and may send bytes in either
    alphabet (google-genai sends the URL-safe one); NanoClone stores and answers the standard one."""
    if "-" in text or "_" in text:
        text = text.replace("-", "+").replace("_", "/")
    return text + "=" * (-len(text) % 4)


def _refusal(candidate: JSON, text: str, spent: CallUsage) -> Refused:
    """Why a candidate came without an image, in Google's words (finishReason, finishMessage)."""
    reason = str(candidate.get("finishReason") or "")
    said = str(candidate.get("finishMessage") or "")
    refusal = {"finishReason": reason or "STOP", "message": said}
    if reason in _IMAGE_SAFETY:
        message = f"Gemini withheld the image for safety reasons ({reason}){_quoted(said)}. Try a different prompt."
        return Refused("image_safety", message, text, refusal, spent)
    if reason in _SAFETY:
        message = f"Gemini stopped for safety reasons ({reason}){_quoted(said)}. Rephrase the prompt."
        return Refused("blocked", message, text, refusal, spent)
    if reason in _RECITATION:
        message = (
            f"Gemini withheld the image as too close to existing work ({reason}){_quoted(said)}. Rephrase the prompt."
        )
        return Refused("no_image", message, text, refusal, spent)
    if reason and reason not in ("STOP", "MAX_TOKENS"):
        message = (
            f"Gemini answered without an image ({reason}){_quoted(said or text)}. Try again or rephrase the prompt."
        )
        return Refused("no_image", message, text, refusal, spent)
    message = (
        "Gemini answered with text only and no image"
        + (f': "{text[:300]}"' if text else "")
        + ". Ask explicitly for an image and try again."
    )
    return Refused("no_image", message, text, refusal, spent)


def _quoted(said: str) -> str:
    return f': "{said[:500]}"' if said else ""


def _grounding(metadata: JSON | None) -> dict[str, list[Any]] | None:
    """The web sources and search queries behind a grounded answer, as the answer stores them."""
    if not metadata:
        return None
    sources = [
        {"title": chunk["web"].get("title") or "", "uri": chunk["web"].get("uri") or ""}
        for chunk in metadata.get("groundingChunks") or []
        if isinstance(chunk, dict) and chunk.get("web") is not None
    ]
    queries = list(metadata.get("webSearchQueries") or [])
    return {"sources": sources, "queries": queries} if sources or queries else None


# --- any other status ---------------------------------------------------------------------------------


def sorted_error(error: errors.APIError) -> GeminiError:
    """What an error answer means for the key that made the call and for the request."""
    body = error.details
    if isinstance(body, list):  # google-genai unwraps a list of one; a relay may send more
        body = next((each for each in body if isinstance(each, dict)), {})
    body = body if isinstance(body, dict) else {}
    google = isinstance(body.get("error"), dict)  # Google's own shape; else a proxy or relay answered
    said = body["error"].get("message") if google else None
    message = str(said or error.message or "") if google else _excerpt(str(error.message or "").encode())
    summary = f"{error.code} {error.status or ''}: {message}".replace("  ", " ").strip()
    details = [d for d in (body.get("error") or {}).get("details") or [] if isinstance(d, dict)] if google else []
    if error.code == 429:
        if not google:
            return KeyExhausted(f"429 from in front of Gemini: {message}", "", _PROXY_REST)
        if VERTEX_429 in message and not details:  # Vertex AI's shared capacity, not a quota of the project
            return KeyExhausted(f"Vertex AI is busy: {message}", "", capacity=True)
        return _exhausted(message, details)
    if not google:  # an HTML or empty page from a proxy: nothing Google said of the key or the request
        return UpstreamUnavailable(f"{summary} (not Gemini's answer: a proxy in front of it?)")
    if error.code == 400 and "location is not supported" in message.lower():
        return LocationRefused(message)
    if error.code == 404 and "no longer available" in message.lower():
        return ModelUnavailable(message)
    if bad := _bad_key(error.code, message, details, summary):
        return KeyRejected(bad)
    if error.code >= 500 or error.code == 408:
        return UpstreamUnavailable(summary)
    return RequestRejected(message or summary)


def _exhausted(message: str, details: list[JSON]) -> KeyExhausted:
    """What a 429 says is spent: QuotaFailure's quota ids (the longest-lasting one wins), their
    values (0: no quota for the model at all) and RetryInfo's delay. quotaDimensions.model is not
    read: it may name a quota family, and the rest belongs to the model the call asked for."""
    quota_ids: list[str] = []
    values: dict[str, int] = {}
    retry_after: dt.timedelta | None = None
    for detail in details:
        for violation in detail.get("violations") or []:
            if isinstance(violation, dict) and violation.get("quotaId"):
                quota_ids.append(str(violation["quotaId"]))
                if str(violation.get("quotaValue", "")).isdigit():  # a string on the wire, sometimes a number
                    values[quota_ids[-1]] = int(violation["quotaValue"])
        if match := _DELAY.match(str(detail.get("retryDelay") or "")):
            retry_after = dt.timedelta(seconds=float(match.group(1)))
    if not values and re.search(r"\blimit: 0\b", message):  # the limit said only in the message
        values = dict.fromkeys(quota_ids, 0)
    # A per-day quota outlasts a per-minute one: rest for the one that frees up last.
    quota_id = next((q for q in quota_ids if "PerDay" in q), quota_ids[0] if quota_ids else "")
    found = [f"quota {q}" + (f" (limit {values[q]})" if q in values else "") for q in quota_ids]
    if retry_after is not None:
        found.append(f"retry in {retry_after.total_seconds():g}s")
    limit = 0 if quota_ids and all(values.get(q) == 0 for q in quota_ids) else values.get(quota_id)
    return KeyExhausted(", ".join(found) or message or "RESOURCE_EXHAUSTED", quota_id, retry_after, limit)


def _bad_key(code: int, message: str, details: list[JSON], summary: str) -> str:
    """Why the key won't work until an operator acts, in words they can act on; "" when it will."""
    reasons = {str(d.get("reason") or "") for d in details}
    metadata: JSON = next((d.get("metadata") or {} for d in details if d.get("reason")), {})
    if "leaked" in message.lower():
        return f"Google reports this key as leaked: create a new key, replace this one and delete it ({message})"
    if "SERVICE_DISABLED" in reasons or "has not been used in project" in message:
        project = str(metadata.get("consumer") or "").removeprefix("projects/") or "of this key"
        where = metadata.get("activationUrl") or "the Google Cloud console"
        return (
            f"The Generative Language API is not enabled in project {project}: enable it at {where}, then test the key"
        )
    if "CONSUMER_SUSPENDED" in reasons or "suspended" in message.lower():
        return f"Google has suspended this key's project (CONSUMER_SUSPENDED): see the Google Cloud console ({message})"
    if code in (401, 403) or "API_KEY_INVALID" in reasons or "API key not valid" in message:
        return summary
    return ""


def _excerpt(body: bytes) -> str:
    """A short, readable piece of a body that isn't Gemini's JSON (an HTML error page...)."""
    text = body.decode(errors="replace")
    if title := re.search(r"<title>(.*?)</title>", text, re.I | re.S):
        text = title.group(1)
    text = " ".join(_TAGS.sub(" ", text).split())
    return f'"{text[:160]}"' if text else "an empty body"
