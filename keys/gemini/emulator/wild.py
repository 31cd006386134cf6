"""Gemini as it answers in the wild: the shapes Google's servers (and relays in front of them) really
send beyond the happy path, modelled on bodies seen in public issue trackers (tests/keys/gemini_wire/).

An error is chosen by the API key's prefix (KEY_ERRORS, plus `emu-invalid-`, `emu-denied-`,
`emu-500-`; quotas are quotas.py's); an answer's shape by a marker in the prompt (MARKERS,
plus the refusals `[block]`, `[block:REASON]`, `[imagesafety]`, `[finish:REASON]`).
docs/emulator.md lists them all.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from keys.gemini.emulator.errors import HELP_URL, JSON, GeminiError

_HTML = (
    "<!DOCTYPE html><html><head><title>{code} {reason}</title></head>"
    "<body><center><h1>{code} {reason}</h1></center><hr><center>nginx</center></body></html>"
)
_RATE_LIMITS = "https://ai.google.dev/gemini-api/docs/rate-limits"
_REFUSAL_MARKER = re.compile(r"\[(block|finish):([A-Z_]+)\]")
# What Google writes in a finishMessage, by reason (the IMAGE_SAFETY wording is a real one).
_FINISH_MESSAGES = {
    "IMAGE_SAFETY": "Unable to show the generated image. The image was filtered out because it violated Google's "
    "[Generative AI Prohibited Use policy](https://policies.google.com/terms/generative-ai/use-policy). You will "
    "not be charged for blocked images. Try rephrasing the prompt.",
    "IMAGE_OTHER": "Unable to show the generated image. The model could not generate the image based on the prompt "
    "provided. You will not be charged for blocked images. Try rephrasing the prompt.",
}


def _error_info(reason: str, **metadata: str) -> JSON:
    return {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com", **metadata},
    }


def _invalid(model: str) -> GeminiError:
    message = "API key not valid. Please pass a valid API key."
    localized = {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": message}
    return GeminiError(400, "INVALID_ARGUMENT", message, [_error_info("API_KEY_INVALID"), localized])


def _suspended(model: str) -> GeminiError:
    message = "Permission denied: Consumer has been suspended."
    return GeminiError(403, "PERMISSION_DENIED", message, [_error_info("CONSUMER_SUSPENDED")])


def _leaked(model: str) -> GeminiError:
    return GeminiError(403, "PERMISSION_DENIED", "Your API key was reported as leaked. Please use another API key.")


def _service_disabled(model: str) -> GeminiError:
    project = "445009168042"
    url = f"https://console.developers.google.com/apis/api/generativelanguage.googleapis.com/overview?project={project}"
    message = (
        f"Generative Language API has not been used in project {project} before or it is disabled. Enable it by "
        f"visiting {url} then retry. If you enabled this API recently, wait a few minutes for the action to "
        "propagate to our systems and retry."
    )
    info = _error_info(
        "SERVICE_DISABLED",
        containerInfo=project,
        activationUrl=url,
        serviceTitle="Generative Language API",
        consumer=f"projects/{project}",
    )
    return GeminiError(403, "PERMISSION_DENIED", message, [info])


def _location(model: str) -> GeminiError:
    return GeminiError(400, "FAILED_PRECONDITION", "User location is not supported for the API use.")


def _retired(model: str) -> GeminiError:
    message = (
        f"This model models/{model} is no longer available to new users. "
        "Please update your code to use a newer model for the latest features and improvements."
    )
    return GeminiError(404, "NOT_FOUND", message)


def _internal(model: str) -> GeminiError:
    return GeminiError(500, "INTERNAL", f"An internal error has occurred. Please retry or report in {HELP_URL}")


def _overloaded(model: str) -> GeminiError:
    return GeminiError(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")


def _quota_failure(*violations: JSON) -> JSON:
    return {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": list(violations)}


def _per_day_bare(model: str) -> GeminiError:
    # A per-day quota id with no tier suffix, no dimensions, no value and no RetryInfo.
    violation = {"quotaMetric": "generativelanguage.googleapis.com/generate_requests_per_model_per_day"}
    violation["quotaId"] = "GenerateRequestsPerDayPerProjectPerModel"
    message = "You exceeded your current quota, please check your plan and billing details."
    return GeminiError(429, "RESOURCE_EXHAUSTED", message, [_quota_failure(violation)])


def _quota_family(model: str) -> GeminiError:
    # Details in another order (RetryInfo first), the quota family for a model, quotaValue a number.
    violation = {
        "quotaMetric": "generativelanguage.googleapis.com/generate_content_paid_tier_requests",
        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
        "quotaDimensions": {"model": "gemini-3-pro", "location": "global"},
        "quotaValue": 20,
    }
    retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"}
    message = f"You exceeded your current quota. See {_RATE_LIMITS}."
    return GeminiError(429, "RESOURCE_EXHAUSTED", message, [retry, _quota_failure(violation)])


def _limit_zero(model: str) -> GeminiError:
    # A free-tier project meeting a model it has no quota for: "limit: 0", said only in the message.
    metric = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
    message = (
        f"You exceeded your current quota, please check your plan and billing details. See {_RATE_LIMITS}.\n"
        f"* Quota exceeded for metric: {metric}, limit: 0, model: {model}-preview\nPlease retry in 35.84s."
    )
    violations = [
        {
            "quotaMetric": metric,
            "quotaId": quota,
            "quotaDimensions": {"location": "global", "model": f"{model}-preview"},
        }
        for quota in (
            "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
            "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
        )
    ]
    help_link = {
        "@type": "type.googleapis.com/google.rpc.Help",
        "links": [{"description": "Learn more about Gemini API quotas", "url": _RATE_LIMITS}],
    }
    retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "35s"}
    return GeminiError(429, "RESOURCE_EXHAUSTED", message, [help_link, _quota_failure(*violations), retry])


def _minute_stuck(model: str) -> GeminiError:
    # A per-minute 429 that comes again however long its retry delay says to wait.
    violation = {
        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
        "quotaDimensions": {"location": "global", "model": model},
        "quotaValue": "2",
    }
    retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}
    message = "You exceeded your current quota, please check your plan and billing details. Please retry in 1s."
    return GeminiError(429, "RESOURCE_EXHAUSTED", message, [_quota_failure(violation), retry])


def _as_list(error: Callable[[str], GeminiError]) -> Callable[[str], GeminiError]:
    def listed(model: str) -> GeminiError:
        shaped = error(model)
        shaped.body = [shaped.body]  # the error object inside a JSON list, as some frontends send it
        return shaped

    return listed


def _html(code: int, reason: str) -> Callable[[str], GeminiError]:
    def page(model: str) -> GeminiError:
        error = GeminiError(code, reason.upper().replace(" ", "_"), reason)
        error.body = _HTML.format(code=code, reason=reason).encode()
        return error

    return page


def _empty(code: int) -> Callable[[str], GeminiError]:
    def nothing(model: str) -> GeminiError:
        error = GeminiError(code, "", "")
        error.body = b""
        return error

    return nothing


# Key prefix -> the error every call with such a key gets.
KEY_ERRORS: dict[str, Callable[[str], GeminiError]] = {
    "emu-invalid-": _invalid,
    "emu-denied-": _suspended,
    "emu-leaked-": _leaked,
    "emu-disabled-": _service_disabled,
    "emu-location-": _location,
    "emu-retired-": _retired,
    "emu-500-": _internal,
    "emu-503-": _overloaded,
    "emu-429day-": _per_day_bare,
    "emu-429family-": _quota_family,
    "emu-429list-": _as_list(_quota_family),
    "emu-limit0-": _limit_zero,
    "emu-rpmstuck-": _minute_stuck,
    "emu-502html-": _html(502, "Bad Gateway"),
    "emu-429html-": _html(429, "Too Many Requests"),
    "emu-403html-": _html(403, "Forbidden"),
    "emu-500empty-": _empty(500),
}


def key_error(key: str | None, model: str) -> GeminiError | None:
    """The error an `emu-*` key always gets (quota keys are counted in quotas.py)."""
    if not key:
        return GeminiError(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API.",
        )
    for prefix, error in KEY_ERRORS.items():
        if key.startswith(prefix):
            return error(model)
    return None


# --- 200s ----------------------------------------------------------------------------------------


def refusal(prompt: str, usage: JSON, envelope: JSON) -> JSON | None:
    """The answer to a prompt Gemini refuses (`[block]`, `[imagesafety]`, `[block:X]`, `[finish:X]`), or None."""
    if "[block]" in prompt:
        return {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": usage, **envelope}
    if "[imagesafety]" in prompt:  # as seen through a relay: parts and safetyRatings null, thinking still billed
        candidate: JSON = {"content": {"parts": None}, "finishReason": "IMAGE_SAFETY", "index": 0}
        candidate["finishMessage"] = _FINISH_MESSAGES["IMAGE_SAFETY"]
        return {
            "candidates": [candidate],
            "promptFeedback": {"safetyRatings": None},
            "usageMetadata": _thinking(usage, 291),
            **envelope,
        }
    marker = _REFUSAL_MARKER.search(prompt)
    if marker is None:
        return None
    kind, reason = marker.groups()
    if kind == "block":
        feedback = {"blockReason": reason, "blockReasonMessage": f"The prompt was blocked ({reason})."}
        return {"promptFeedback": feedback, "usageMetadata": usage, **envelope}
    said = _FINISH_MESSAGES.get(reason, f"The model stopped without an image ({reason}).")
    candidate = {"content": {}, "finishReason": reason, "finishMessage": said, "index": 0}
    return {"candidates": [candidate], "usageMetadata": _thinking(usage, 120), **envelope}


def _thinking(usage: JSON, tokens: int) -> JSON:
    """Usage with thinking tokens: Gemini bills the thinking of an answer it then withholds."""
    return {**usage, "thoughtsTokenCount": tokens, "totalTokenCount": usage["totalTokenCount"] + tokens}


# Prompt marker -> what it does to the answer.
MARKERS = {
    "[cutoff]": "the image's base64 cut off at 60% (at a multiple of 4: it decodes, the image ends early)",
    "[cutoff-odd]": "the image's base64 cut off at a length that is no base64",
    "[garbage]": "the image's data is base64 of bytes that are no image",
    "[mime-wrong]": "the PNG labelled image/jpeg",
    "[mime-missing]": "the image part has no mimeType",
    "[datauri]": "the image sent inside a text part, as ![image](data:image/png;base64,...)",
    "[two-images]": "two image parts in one answer",
    "[odd-fields]": "safetyRatings null, an empty thoughtSignature on the text part, unknown fields "
    "(turnToken, usageMetadata.serviceTier, usageMetadata.trafficType)",
    "[bad-signature]": 'a thoughtSignature that is no base64 ("<large string>", as a relay\'s doc shows it)',
    "[list]": "the answer inside a JSON list",
    "[chunks]": "the answer as a JSON list of two streamed chunks (the text, then the image)",
    "[html]": "an HTML page with status 200 (a relay's error page)",
    "[empty]": "an empty body with status 200",
}


def reshape(answer: JSON, prompt: str) -> JSON | list[Any] | bytes:
    """The answer as the prompt's marker says it comes (unchanged without one)."""
    marker = next((marker for marker in MARKERS if marker in prompt), None)
    if marker is None:
        return answer
    if marker == "[html]":
        return _HTML.format(code=200, reason="OK").replace("200 OK", "Service temporarily unavailable").encode()
    if marker == "[empty]":
        return b""
    if marker == "[list]":
        return [answer]
    parts: list[JSON] = answer["candidates"][0]["content"]["parts"]
    texts = [part for part in parts if "text" in part]
    images = [part for part in parts if "inlineData" in part]
    if marker == "[chunks]":
        first = {**answer, "candidates": [{"content": {"role": "model", "parts": texts}, "index": 0}]}
        first.pop("usageMetadata", None)
        return [first, {**answer, "candidates": [{**answer["candidates"][0], "content": {"parts": images}}]}]
    image = images[0]
    data = image["inlineData"]["data"]
    if marker == "[cutoff]":
        image["inlineData"]["data"] = data[: len(data) * 3 // 5 // 4 * 4]
    elif marker == "[cutoff-odd]":
        image["inlineData"]["data"] = data[: len(data) * 3 // 5 // 4 * 4 + 1].rstrip("=")
    elif marker == "[garbage]":
        image["inlineData"]["data"] = "R2VtaW5pIHNhaWQgc29tZXRoaW5nIHRoYXQgaXMgbm8gaW1hZ2U="
    elif marker == "[mime-wrong]":
        image["inlineData"]["mimeType"] = "image/jpeg"
    elif marker == "[mime-missing]":
        del image["inlineData"]["mimeType"]
    elif marker == "[datauri]":
        parts[parts.index(image)] = {"text": f"![image](data:image/png;base64,{data})"}
    elif marker == "[two-images]":
        parts.append({"inlineData": dict(image["inlineData"]), "thoughtSignature": image.get("thoughtSignature", "")})
    elif marker == "[odd-fields]":
        for text in texts:
            text["thoughtSignature"] = ""
        answer["candidates"][0]["safetyRatings"] = None
        answer["promptFeedback"] = {"safetyRatings": None}
        answer["turnToken"] = "Cg0KCW5hbm9jbG9uZRAB"
        answer["usageMetadata"].update(serviceTier="standard", trafficType="ON_DEMAND")
    elif marker == "[bad-signature]":
        image["thoughtSignature"] = "<large string>"
    return answer
