"""Gemini's error answers, in Google's shape: `{"error": {code, message, status, details}}`."""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]
Body = JSON | list[Any] | bytes  # what the server sends: JSON, or raw bytes

HELP_URL = "https://developers.generativeai.google/guide/troubleshooting"


class GeminiError(Exception):
    """An answer in Google's error shape: `{"error": {code, message, status, details}}`; `body` may be
    changed to what a proxy in front of Gemini sends instead (a list, an HTML page, nothing)."""

    def __init__(self, code: int, status: str, message: str, details: list[JSON] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.body: Body = {"error": {"code": code, "message": message, "status": status, "details": details or []}}


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
