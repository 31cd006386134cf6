"""Re-testing a key against Gemini on an operator's request (keys page, admin action).

A models.get call proves the key is accepted without spending image quota, and does not count
against the key's daily limit. The outcome goes through pool.report(), as a generation's would.
"""

from __future__ import annotations

from dataclasses import dataclass

from keys import pool
from keys.catalogue import ALIASES, MODELS, default_model
from keys.gemini import client as gemini
from keys.models import ApiKey


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    message: str


def retest(key: ApiKey) -> CheckResult:
    model = default_model().id
    lease = pool.Lease.of(key, model)
    try:
        gemini.check_key(lease, model)
    except pool.GeminiError as error:
        pool.report(lease, error)
        if isinstance(error, pool.KeyRejected):
            return CheckResult(False, f"{key.masked} was rejected: {error}")
        if isinstance(error, pool.KeyExhausted):
            return CheckResult(False, f"{key.masked} is out of quota: {error}")
        if isinstance(error, pool.KeyUnreachable):
            return CheckResult(False, f"{key.masked} is unreachable: {error}")
        return CheckResult(False, f"{key.masked} could not be checked: {error}")
    pool.report(lease)
    # Accepted: an earlier "invalid" verdict no longer holds (only an operator's re-test clears it),
    # and a key that was unreachable is back.
    ApiKey.objects.filter(pk=key.pk).update(invalid=False, invalid_reason="")
    ApiKey.objects.filter(pk=key.pk, exhausted_detail=pool.UNREACHABLE_DETAIL).update(
        exhausted_until=None, exhausted_detail=""
    )
    return CheckResult(True, f"{key.masked} works.")


@dataclass(frozen=True)
class CatalogueCheck:
    unseen: list[str]  # catalogue models the key's project does not see
    unknown: list[str]  # image models Google lists that the catalogue lacks

    @property
    def summary(self) -> str:
        parts = []
        if self.unseen:
            parts.append(f"not listed for this key's project: {', '.join(self.unseen)}")
        if self.unknown:
            parts.append(f"image models the catalogue lacks: {', '.join(self.unknown)}")
        return "; ".join(parts) or "the catalogue matches what Gemini lists"


def catalogue_key() -> ApiKey | None:
    """A usable AI Studio key to ask the Gemini API's models.list with (Vertex AI lists other models)."""
    return pool.usable_keys().filter(kind=ApiKey.Kind.AI_STUDIO).first()


def sync_models(key: ApiKey) -> CatalogueCheck:
    """Compare the model catalogue with what the Gemini API's models.list shows `key` (an AI Studio
    key). Raises pool.GeminiError."""
    if key.is_vertex:
        raise pool.RequestRejected(f"{key.masked} is a {key.get_kind_display()}: models.list needs an AI Studio key.")
    lease = pool.Lease.of(key)
    listed = set(gemini.list_models(lease))
    unseen = [model for model in MODELS if model not in listed]
    unknown = sorted(name for name in listed if "image" in name and name not in MODELS and name not in ALIASES)
    return CatalogueCheck(unseen, unknown)
