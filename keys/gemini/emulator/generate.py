"""generateContent: the answer to a parsed request body, as Gemini gives it (raises GeminiError)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import math
import re
import secrets
from typing import Any

import pybase64
from PIL import Image, ImageOps, UnidentifiedImageError

from keys.catalogue import ImageModel, model_for_size
from keys.gemini.emulator import wild
from keys.gemini.emulator.errors import HELP_URL, JSON, invalid_argument
from keys.gemini.emulator.render import render_png

# Gemini bills ~258 tokens per input image and a fixed token count per output image,
# which depends on the model and the image size (see Gemini's pricing page).
_INPUT_IMAGE_TOKENS = 258
_OUTPUT_IMAGE_TOKENS: dict[str, dict[str, int]] = {
    "gemini-3-pro-image": {"1K": 1120, "2K": 1120, "4K": 2000},
    "gemini-3.1-flash-image": {"512": 747, "1K": 1120, "2K": 1680, "4K": 2520},
    "gemini-nano-banana-2.1": {"1K": 1120, "2K": 1680, "4K": 2520},
    "gemini-3.1-flash-lite-image": {"1K": 1120},
}


def _decode_base64(data: str) -> bytes:
    # The SDK sends inline data URL-safe encoded (`-_`); other clients send standard `+/`.
    cleaned = data.replace("-", "+").replace("_", "/")
    return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)


def inline_images(contents: list[JSON]) -> list[JSON]:
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


def last_user_text(contents: list[JSON]) -> str:
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


def _open_image(blob: JSON) -> Image.Image:
    try:
        data = _decode_base64(str(blob.get("data", "")))
        image = Image.open(io.BytesIO(data))
        image.load()
    except (binascii.Error, ValueError, OSError, UnidentifiedImageError) as exc:
        raise invalid_argument(f"Unable to process input image. Please retry or report in {HELP_URL}") from exc
    return ImageOps.exif_transpose(image).convert("RGB")


# --- generateContent ------------------------------------------------------------------


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def either(data: JSON, name: str) -> Any:
    """A field in either spelling: Google's JSON parser takes camelCase and snake_case alike (other
    gateways send image_config, google-genai sends thinking_level)."""
    if name in data:
        return data[name]
    return data.get(re.sub(r"([A-Z])", r"_\1", name).lower())


def generate(model_name: str, request: JSON) -> JSON:
    """The generateContent answer for a parsed request body (raises GeminiError)."""
    contents = request.get("contents")
    if not isinstance(contents, list) or not contents or not all(isinstance(c, dict) for c in contents):
        raise invalid_argument("* GenerateContentRequest.contents: contents is not specified")
    config = either(request, "generationConfig") or {}
    if not isinstance(config, dict) or not isinstance(either(config, "imageConfig") or {}, dict):
        raise invalid_argument("Invalid value at 'generation_config'")
    image_config = either(config, "imageConfig") or {}
    model = model_for_size(model_name)
    ratio, resolution = either(image_config, "aspectRatio"), either(image_config, "imageSize")
    if ratio is not None and ratio not in model.aspect_ratios:
        raise invalid_argument(f"Unsupported aspect ratio: {ratio}. Supported: {', '.join(model.aspect_ratios)}")
    if resolution is not None and resolution not in model.resolutions:
        raise invalid_argument(f"Unsupported image size: {resolution}. Supported: {', '.join(model.resolutions)}")
    thinking_config = either(config, "thinkingConfig") or {}
    thinking = str(either(thinking_config, "thinkingLevel") or "").lower()
    if thinking and thinking not in model.thinking_levels:
        raise invalid_argument(f"Thinking level {thinking.upper()} is not supported for this model.")
    grounded = any(
        isinstance(tool, dict) and ("googleSearch" in tool or "google_search" in tool)
        for tool in request.get("tools") or []
    )
    if grounded and not model.grounding:
        raise invalid_argument("Search as a tool is not enabled for this model.")

    prompt = last_user_text(contents)
    images = inline_images(contents)
    # Every turn is billed as prompt, not just the last one.
    all_text = " ".join(str(p["text"]) for c in contents for p in c.get("parts") or [] if "text" in p)
    prompt_tokens = _tokens(all_text) + _INPUT_IMAGE_TOKENS * len(images)
    envelope: JSON = {"modelVersion": model_name, "responseId": secrets.token_urlsafe(16)}

    usage = {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens}
    if (refused := wild.refusal(prompt, usage, envelope)) is not None:
        return refused

    modalities = [str(m).upper() for m in either(config, "responseModalities") or ["TEXT", "IMAGE"]]
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
