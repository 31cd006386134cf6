"""Re-testing a key against Gemini on an operator's request (keys page, admin action).

A models.get call proves the key is accepted without spending image quota, and does not count
against the key's daily limit. The outcome goes through pool.report(), as a generation's would.
"""

from __future__ import annotations

from dataclasses import dataclass

from keys import pool
from keys.gemini import client as gemini
from keys.gemini.catalogue import default_model
from keys.models import ApiKey


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    message: str


def retest(key: ApiKey) -> CheckResult:
    lease = pool.Lease(key.pk, key.masked, key.base_url, key.secret, key.consecutive_failures)
    try:
        gemini.check_key(lease, default_model().id)
    except pool.GeminiError as error:
        pool.report(lease, error)
        if isinstance(error, pool.KeyRejected):
            return CheckResult(False, f"{key.masked} was rejected: {error}")
        if isinstance(error, pool.KeyExhausted):
            return CheckResult(False, f"{key.masked} is out of quota: {error}")
        return CheckResult(False, f"{key.masked} could not be checked: {error}")
    pool.report(lease)
    # Accepted: an earlier "invalid" verdict no longer holds (only an operator's re-test clears it).
    ApiKey.objects.filter(pk=key.pk).update(invalid=False, invalid_reason="")
    return CheckResult(True, f"{key.masked} works.")
