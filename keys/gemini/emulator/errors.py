"""Gemini's error answers, in Google's shape: `{"error": {code, message, status, details}}`, and the
errors an `emu-*` key always gets."""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]

HELP_URL = "https://developers.generativeai.google/guide/troubleshooting"


class GeminiError(Exception):
    """An answer in Google's error shape: `{"error": {code, message, status, details}}`."""

    def __init__(self, code: int, status: str, message: str, details: list[JSON] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.body: JSON = {"error": {"code": code, "message": message, "status": status, "details": details or []}}


def invalid_argument(message: str) -> GeminiError:
    return GeminiError(400, "INVALID_ARGUMENT", message)


PER_DAY = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
PER_MINUTE = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"


def quota_exhausted(model: str, limit: int, quota_id: str = PER_DAY, retry_seconds: float = 38.0) -> GeminiError:
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


def key_error(key: str | None) -> GeminiError | None:
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
        return GeminiError(500, "INTERNAL", f"An internal error has occurred. Please retry or report in {HELP_URL}")
    return None
