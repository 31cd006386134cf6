"""Re-testing a key against Gemini on an operator's request (keys page, admin action).

A models.get call proves the key is accepted without spending image quota, and does not count
against the key's daily limit. The outcome updates the key the same way a generation would.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from conversations import gemini
from keys import pool
from keys.models import ApiKey


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    message: str


def retest(key: ApiKey) -> CheckResult:
    lease = pool.Lease(key.pk, key.masked, key.base_url, key.secret)
    try:
        gemini.check_key(lease, settings.DEFAULT_MODEL)
    except gemini.KeyRejected as error:
        pool.report_invalid(lease, str(error))
        return CheckResult(False, f"{key.masked} was rejected: {error}")
    except gemini.KeyExhausted as error:
        pool.report_exhausted(lease, str(error))
        return CheckResult(False, f"{key.masked} is out of quota: {error}")
    except (gemini.UpstreamUnavailable, gemini.RequestRejected) as error:
        ApiKey.objects.filter(pk=key.pk).update(last_error=str(error)[:1000], last_error_at=timezone.now())
        return CheckResult(False, f"{key.masked} could not be checked: {error}")
    # Accepted: an earlier "invalid" verdict no longer holds.
    ApiKey.objects.filter(pk=key.pk).update(invalid=False, invalid_reason="", consecutive_failures=0)
    return CheckResult(True, f"{key.masked} works.")
