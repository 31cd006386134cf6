"""The key pool: which Gemini key serves the next request, and what a failure does to a key.

Rules (DESIGN.md): usable for a model = enabled, not invalid, not resting (as a whole, or for
that model, on the key or on its project), under its daily limit for the current quota day.
Least used today first, ties to the least recently used. Selection and the count increment
are one conditional UPDATE, so concurrent workers can never push a key past its limit.

A 429 rests only what it says is spent (KeyRest): that model, on that key or on every key of
its project; a per-minute quota until its retry delay, a per-day quota until the next quota
day, a 429 without details for NANOCLONE_KEY_COOLDOWN_HOURS.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, connections, router, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from keys import credentials, crypto, metrics, pacing, pricing
from keys.catalogue import MODELS
from keys.models import ApiKey, KeyRest, ModelNotice, Price, UsageRecord, quota_day, scope_of

log = logging.getLogger(__name__)

# After this many upstream errors in a row a key rests briefly: it is probably the key's
# project, not Gemini, that is failing.
FAILURES_BEFORE_REST = 5
REST_AFTER_FAILURES = dt.timedelta(minutes=5)
REST_DETAIL = f"{FAILURES_BEFORE_REST} upstream errors in a row"
UNREACHABLE_DETAIL = "unreachable (connection failed)"
MINUTE_REST_DEFAULT = dt.timedelta(seconds=60)  # a per-minute 429 without RetryInfo
NO_BATCH_KEY = "No AI Studio key can submit a batch: Gemini's Batch API takes AI Studio keys, not Vertex AI's"
BATCH_FULL = "Every AI Studio key's batch quota (input tokens enqueued in batches) is full"
BATCH_REST = "batch:"  # KeyRest.model of a rest of batch submission: "batch:<model>" (online calls go on)
CAPACITY_REST = dt.timedelta(seconds=15)  # Vertex AI's busy shared capacity: Google asks to back off and retry


class NoUsableKey(Exception):
    def __init__(self, message: str, retry_after: dt.datetime | None = None, retired: str = ""):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.retired = retired  # what Gemini said, when the model is retired for every key that could serve

    @property
    def retry_after_seconds(self) -> int | None:
        if self.retry_after is None:
            return None
        return max(1, int((self.retry_after - timezone.now()).total_seconds()) + 1)


class GeminiError(Exception):
    """What a Gemini call can end in, sorted by what it means for the key that made it
    (keys.gemini.answers reads every answer into one of these)."""

    latency_ms: int | None = None  # how long the call took, set by the client
    usage: CallUsage | None = None  # what an answer without an image still used (a refusal's tokens)


class KeyExhausted(GeminiError):
    """429: a quota of this key's project is spent (which one, when known, and for how long).
    `limit` 0: the project has no quota for the model at all (a free tier and Nano Banana Pro).
    `capacity`: Vertex AI's capacity for the model, shared by its customers, is busy for a moment."""

    def __init__(
        self,
        detail: str,
        quota_id: str = "",
        retry_after: dt.timedelta | None = None,
        limit: int | None = None,
        capacity: bool = False,
    ):
        super().__init__(detail)
        self.quota_id = quota_id
        self.retry_after = retry_after
        self.limit = limit
        self.capacity = capacity  # Vertex AI's shared capacity is busy: no quota of the project is spent


class KeyRejected(GeminiError):
    """400 API_KEY_INVALID / 401 / 403: this key will not work until an operator acts."""


class ModelUnavailable(GeminiError):
    """404 "no longer available to new users": the model is retired for this key's project (older
    projects may still have it)."""


class LocationRefused(GeminiError):
    """400 "User location is not supported": Google refuses the address the call came from, not
    the key; a key that calls through another base URL (a proxy) may still serve."""


class UpstreamUnavailable(GeminiError):
    """5xx, timeout or connection error: worth retrying, maybe on another key."""


class KeyUnreachable(UpstreamUnavailable):
    """The connection failed (DNS, refused, TLS): the key's endpoint can't be reached at all."""


class UnreadableAnswer(UpstreamUnavailable):
    """Gemini (or a relay) answered 200 with something that can't be read: not JSON, a cut-off or
    damaged image. Retried like upstream trouble; not the key's fault."""


class RequestRejected(GeminiError):
    """Gemini refused the request itself (400 other than a bad key): no key would help."""


class Refused(GeminiError):
    """Gemini answered but produced no image: blocked prompt, image safety, text only. `refusal` is
    Google's own word for it: {"blockReason" or "finishReason": ..., "message": finishMessage}."""

    def __init__(
        self,
        code: str,
        message: str,
        text: str = "",
        refusal: dict[str, str] | None = None,
        usage: CallUsage | None = None,
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.text = text
        self.refusal = refusal or {}
        self.usage = usage


@dataclass(frozen=True)
class Caller:
    """Who a call is made for, as plain values for the ledger (this floor knows no users or jobs)."""

    user_id: int | None = None
    door: str = ""  # Job.source
    job_id: str = ""
    resolution: str = ""
    tier: str = ""  # the price tier billed (Price.Tier): "" is NANOCLONE_PRICE_TIER, "batch" the Batch API's


@dataclass(frozen=True)
class CallUsage:
    """What a call that produced an answer used, as Gemini's usageMetadata says."""

    images: int = 0
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    thinking_tokens: int | None = None
    latency_ms: int | None = None


@dataclass(frozen=True)
class Lease:
    """One acquired use of a credential: the decrypted secret (and proxy) never leave this object."""

    key_id: int
    masked: str
    base_url: str
    secret: str  # an API key, or a service account's JSON key
    failures_before: int = 0  # the key's consecutive upstream failures when it was leased
    model: str = ""  # what the use is for: a 429 rests this model
    project: str = ""
    unreachable: bool = False  # the key was marked unreachable when leased
    free_tier: bool = False  # its calls cost 0
    label: str = ""
    caller: Caller | None = None  # set for generations: their calls go into the usage ledger
    kind: str = ApiKey.Kind.AI_STUDIO
    location: str = ""  # a service account's Vertex AI location
    proxy: str = ""  # the proxy URL its calls go through, with its password
    slots: tuple[pacing.Slot, ...] = ()  # its places in the windows of its project's (or key's) limits
    not_before: dt.datetime | None = None  # a place booked in a coming window: call then, not before
    batch: bool = False  # for the Batch API: its 429s rest batch submission (rest_model), not online calls

    def __repr__(self) -> str:  # keep secrets out of tracebacks and logs
        return f"Lease(key_id={self.key_id}, masked={self.masked!r})"

    @property
    def is_vertex(self) -> bool:
        return self.kind != ApiKey.Kind.AI_STUDIO

    @property
    def rest_model(self) -> str:
        """What a 429 of this use rests: the model's online calls, or its batch submission."""
        return f"{BATCH_REST}{self.model}" if self.batch else self.model

    @classmethod
    def of(cls, key: ApiKey, model: str = "") -> Lease:
        """A use of `key` outside selection (an operator's test): counted nowhere."""
        return cls(
            key.pk,
            key.masked,
            key.base_url,
            key.secret,
            key.consecutive_failures,
            model,
            key.project,
            key.unreachable,
            key.free_tier,
            key.label,
            kind=key.kind,
            location=key.location,
            proxy=key.proxy,
        )


def _usable(
    alias: str, today: dt.date, now: dt.datetime, model: str = "", paced: bool = True
) -> tuple[str, list[object]]:
    """The rule for a usable key, as SQL on the keys_apikey row `alias` and its parameters: enabled,
    not invalid, with a daily limit, not resting as a whole, under its limit for the quota day, and
    (for `model`) of a kind that serves the model and not resting for it, on the key or on its
    project (with `paced` False, a rest until a full window ends doesn't count: booking looks past
    it). Written out once, in SQL, because the pool takes a key in one statement that Django's ORM
    takes ~5 ms of CPU to build."""
    ops = connections[router.db_for_read(ApiKey)].ops
    at, day = ops.adapt_datetimefield_value(now), ops.adapt_datefield_value(today)
    sql = (
        f"{alias}.enabled AND NOT {alias}.invalid AND {alias}.daily_limit > 0"
        f" AND ({alias}.exhausted_until IS NULL OR {alias}.exhausted_until <= %s)"
        f" AND ({alias}.count_day IS NULL OR {alias}.count_day <> %s OR {alias}.count_today < {alias}.daily_limit)"
    )
    params: list[object] = [at, day]
    if model and (kinds := kinds_serving(model)) != set(ApiKey.Kind.values):
        sql += f" AND {alias}.kind IN ({', '.join(['%s'] * len(kinds))})" if kinds else " AND 0 = 1"
        params += sorted(kinds)
    if model:
        sql += (
            f" AND NOT EXISTS (SELECT 1 FROM keys_keyrest rest WHERE rest.model = %s AND rest.until > %s"
            f" AND (rest.key_id = {alias}.id OR (rest.project = {alias}.project AND {alias}.project <> ''))"
            + ("" if paced else f" AND rest.kind <> '{KeyRest.Kind.PACED}'")
            + ")"
        )
        params += [model, at]
    return sql, params


# What a lease needs of its key, read back by the UPDATE that takes the use.
_LEASED = (
    "id",
    "masked",
    "label",
    "base_url",
    "secret_encrypted",
    "consecutive_failures",
    "project",
    "unreachable",
    "free_tier",
    "kind",
    "location",
    "proxy_encrypted",
)


def acquire(
    model: str = "", exclude: Collection[int] = (), caller: Caller | None = None, wait: float = 0.0, tokens: int = 0
) -> Lease:
    """Take one use of the best key usable for `model` whose limits' windows have room now for a
    call of `tokens` input tokens, or raise NoUsableKey saying why there is none. With `wait`
    seconds, when every window is full, book a place in the first coming window with room instead
    (the lease's not_before)."""
    full: set[int] = set()  # keys whose window filled between choosing them and taking a place
    for _ in range(20):
        taken = _take_best(model, {*exclude, *full})
        if taken is not None:
            key: dict[str, Any] = dict(zip(_LEASED, taken, strict=True))
            slots = pacing.admit(key["id"], key["project"], model, tokens=tokens) if model else ()
            if slots is None:
                _give_back(key["id"])
                full.add(key["id"])
                continue
            return _lease(key, model, caller, slots)
        if wait > 0 and model and (booked := _book(model, exclude, caller, wait, tokens)) is not None:
            return booked
        if not usable_keys(model).exclude(pk__in=[*exclude, *full]).exists():
            raise explain_no_usable_key(exclude, model)
        # Another worker took the last use of the best key at the same moment: pick again.
    raise NoUsableKey("The key pool is too busy right now; try again in a moment.")


def acquire_batch(
    model: str, tokens: int = 0, enqueued: Mapping[int, int] | None = None, exclude: Collection[int] = ()
) -> Lease:
    """An AI Studio key to submit a batch of `model` of `tokens` input tokens with, or NoUsableKey.
    Vertex AI's batch prediction reads and writes Cloud Storage or BigQuery, out of NanoClone's
    reach. Batches are spread like calls, to the key whose last use is oldest, among the keys whose
    limits of tokens enqueued in batches (on the key, on its project) have room, `enqueued` being the
    tokens of each key's batches not finished yet. Their items count toward no online daily limit,
    and a batch 429 rests only batch submission (BATCH_REST)."""
    now = timezone.now()
    resting = KeyRest.objects.filter(model=BATCH_REST + model, until__gt=now).filter(
        Q(key=OuterRef("pk")) | (Q(project=OuterRef("project")) & ~Q(project=""))
    )
    keys = (
        _batch_keys()
        .filter(Q(exhausted_until__isnull=True) | Q(exhausted_until__lte=now))
        .exclude(pk__in=exclude)
        .exclude(Exists(resting))
        .order_by(F("last_used_at").asc(nulls_first=True), "pk")
    )
    full = 0
    for key in keys:
        if not _batch_room(key, model, tokens, enqueued or {}):
            full += 1
            continue
        # Taken with a conditional UPDATE: the next batch, here or in another process, goes elsewhere.
        if ApiKey.objects.filter(pk=key.pk, last_used_at=key.last_used_at).update(last_used_at=now):
            return replace(Lease.of(key, model), batch=True)
    if full:
        raise NoUsableKey(f"{BATCH_FULL} for {model}: the batches wait for earlier ones to finish.")
    if keys.exists():
        raise NoUsableKey("The key pool is too busy right now; try again in a moment.")
    raise NoUsableKey(f"{NO_BATCH_KEY} (for {model}, now)")


def _batch_room(key: ApiKey, model: str, tokens: int, enqueued: Mapping[int, int]) -> bool:
    for scope, limit in pacing.batch_token_limits(key.pk, key.project, model):
        on_project = scope.startswith("project:")
        holders = ApiKey.objects.filter(project=key.project).values_list("pk", flat=True) if on_project else [key.pk]
        if sum(enqueued.get(holder, 0) for holder in holders) + tokens > limit:
            return False
    return True


def _batch_keys() -> QuerySet[ApiKey]:
    """The keys that may submit batches, rests aside: enabled, valid AI Studio keys."""
    return ApiKey.objects.filter(enabled=True, invalid=False, daily_limit__gt=0, kind=ApiKey.Kind.AI_STUDIO)


def require_batch_key() -> None:
    """Raise NoUsableKey unless an AI Studio key may submit batches (batches wait out its rests)."""
    if not _batch_keys().exists():
        raise NoUsableKey(NO_BATCH_KEY)


def _lease(
    key: dict[str, Any],
    model: str,
    caller: Caller | None,
    slots: tuple[pacing.Slot, ...],
    not_before: dt.datetime | None = None,
) -> Lease:
    return Lease(
        key["id"],
        key["masked"],
        key["base_url"],
        crypto.decrypt(key["secret_encrypted"]),
        key["consecutive_failures"],
        model=model,
        project=key["project"],
        unreachable=bool(key["unreachable"]),
        free_tier=bool(key["free_tier"]),
        label=key["label"],
        caller=caller,
        kind=key["kind"],
        location=key["location"],
        proxy=crypto.decrypt(key["proxy_encrypted"]) if key["proxy_encrypted"] else "",
        slots=slots,
        not_before=not_before,
    )


def _book(model: str, exclude: Collection[int], caller: Caller | None, wait: float, tokens: int) -> Lease | None:
    """A place in the first coming per-minute window, within `wait` seconds, of a key that only waits
    for a full window. Places are taken in the order requests ask for them: the queue's order."""
    now = timezone.now()
    keys = list(usable_keys(model, paced=False).exclude(pk__in=exclude).values_list("pk", "project"))
    if not keys:
        return None
    start = pacing.window(pacing.Period.MINUTE, now)[1]
    while (start - now).total_seconds() <= wait:
        for key_id, project in keys:
            slots = pacing.admit(key_id, project, model, at=start, tokens=tokens)
            if slots is None:
                continue
            taken = _take_best(model, exclude, only=key_id, paced=False)
            if taken is None:  # the key stopped being usable meanwhile
                for slot in slots:
                    pacing.give_back(slot)
                continue
            return _lease(dict(zip(_LEASED, taken, strict=True)), model, caller, slots, not_before=start)
        start = pacing.window(pacing.Period.MINUTE, start)[1]
    return None


def _give_back(key_id: int) -> None:
    """Undo the use _take_best counted on a key that had no room in its window after all."""
    ApiKey.objects.filter(pk=key_id, count_day=quota_day(), count_today__gt=0).update(
        count_today=F("count_today") - 1, total_count=F("total_count") - 1
    )


def _take_best(
    model: str, exclude: Collection[int], only: int | None = None, paced: bool = True
) -> tuple[object, ...] | None:
    """Count one use on the best usable key (least used today, then least recently used) and return
    its _LEASED columns, in one statement: UPDATE ... WHERE id = (the best) ... RETURNING. None when
    no row matched. The usable rule is checked on the updated row too: on PostgreSQL a concurrent
    UPDATE of the same key makes this one re-check it on the new row, so the daily limit holds."""
    today, now = quota_day(), timezone.now()
    database = router.db_for_write(ApiKey)
    ops = connections[database].ops
    day = ops.adapt_datefield_value(today)
    best_usable, best_params = _usable("best", today, now, model, paced)
    usable, params = _usable("taken", today, now, model, paced)
    excluded = f" AND best.id NOT IN ({', '.join(['%s'] * len(exclude))})" if exclude else ""
    if only is not None:
        excluded += f" AND best.id = {int(only)}"
    returning = ", ".join(_LEASED)  # SQLite takes no alias here
    sql = (
        "UPDATE keys_apikey AS taken SET"
        " count_today = CASE WHEN taken.count_day = %s THEN taken.count_today + 1 ELSE 1 END,"
        " count_day = %s, total_count = taken.total_count + 1, last_used_at = %s"
        " WHERE taken.id = (SELECT best.id FROM keys_apikey AS best"
        f" WHERE {best_usable}{excluded}"
        " ORDER BY CASE WHEN best.count_day = %s THEN best.count_today ELSE 0 END,"
        " best.last_used_at ASC NULLS FIRST, best.id LIMIT 1)"
        f" AND {usable} RETURNING {returning}"
    )
    values: list[Any] = [day, day, ops.adapt_datetimefield_value(now), *best_params, *exclude, day, *params]
    with connections[database].cursor() as cursor:
        cursor.execute(sql, values)
        return cursor.fetchone()


def next_quota_day_start(now: dt.datetime | None = None) -> dt.datetime:
    tz = ZoneInfo(settings.QUOTA_TIMEZONE)
    local = (now or timezone.now()).astimezone(tz)
    return dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), tzinfo=tz)


def _current_rests(now: dt.datetime | None = None) -> QuerySet[KeyRest]:
    return KeyRest.objects.filter(until__gt=now or timezone.now())


def rests_by_key(keys: Collection[ApiKey], now: dt.datetime | None = None) -> dict[int, list[KeyRest]]:
    """The models resting on each key right now (its own rests and its project's), soonest end first."""
    rests = list(_current_rests(now).order_by("until"))
    return {
        key.pk: [rest for rest in rests if rest.key_id == key.pk or (key.project and rest.project == key.project)]
        for key in keys
    }


def rest_counts(now: dt.datetime | None = None) -> dict[tuple[str, str], int]:
    """How many rests are running now (a model resting on a key or a project), by (model, kind)."""
    rows = _current_rests(now).values("model", "kind").annotate(n=Count("id"))
    return {(row["model"], row["kind"]): row["n"] for row in rows}


@dataclass(frozen=True)
class ProjectSummary:
    project: str  # "" for keys that name no project (each is its own)
    keys: int
    used_today: int
    left_today: int  # what its usable keys may still make today under their daily limits


def projects(keys: Collection[ApiKey]) -> list[ProjectSummary]:
    """What each project used and has left today, named projects first."""
    grouped: dict[str, list[ApiKey]] = {}
    for key in keys:
        grouped.setdefault(key.project, []).append(key)
    return [
        ProjectSummary(
            name,
            len(members),
            sum(key.used_today for key in members),
            sum(max(0, key.daily_limit - key.used_today) for key in members if key.enabled and not key.invalid),
        )
        for name, members in sorted(grouped.items(), key=lambda item: (item[0] == "", item[0]))
    ]


def explain_no_usable_key(exclude: Collection[int] = (), model: str = "") -> NoUsableKey:
    keys = list(ApiKey.objects.all())
    if not keys:
        return NoUsableKey("No Gemini API key is configured. Add one on the keys page or with POST /api/keys.")
    now = timezone.now()
    reasons: list[str] = []
    times: list[dt.datetime] = []
    by_status: dict[str, list[ApiKey]] = {}
    resting_for_model: dict[int, KeyRest] = {}
    rests = rests_by_key(keys, now) if model else {}
    for key in keys:
        status = key.status
        if status == ApiKey.Status.ACTIVE and model:
            rest = next((r for r in rests[key.pk] if r.model == model), None)
            if rest is not None:
                resting_for_model[key.pk] = rest
                continue
        by_status.setdefault(status, []).append(key)
    # A quota of 0 and a retired model are no wait: said apart from rests that end.
    for_good = (KeyRest.Kind.NO_QUOTA, KeyRest.Kind.RETIRED)
    if none := [rest for rest in resting_for_model.values() if rest.kind == KeyRest.Kind.NO_QUOTA]:
        reasons.append(f"{len(none)} with no quota for {model} (limit 0: their project's plan gives it none)")
    if gone := [rest for rest in resting_for_model.values() if rest.kind == KeyRest.Kind.RETIRED]:
        reasons.append(f'{len(gone)} whose project no longer has {model} (Gemini: "{gone[0].detail[:200]}")')
    if waiting := [rest for rest in resting_for_model.values() if rest.kind not in for_good]:
        first = min(waiting, key=lambda rest: rest.until)
        times.append(first.until)
        reasons.append(f"{len(waiting)} resting for {model} ({first.why}) until {first.until:%Y-%m-%d %H:%M:%S} UTC")
    cooling = by_status.get(ApiKey.Status.EXHAUSTED, []) + by_status.get(ApiKey.Status.UNREACHABLE, [])
    cooling = [k for k in cooling if k.exhausted_until and k.exhausted_until > now]
    for group, label in (
        ([k for k in cooling if k.exhausted_detail == REST_DETAIL], "resting after repeated upstream errors"),
        ([k for k in cooling if k.exhausted_detail == UNREACHABLE_DETAIL], "unreachable"),
        ([k for k in cooling if k.exhausted_detail not in (REST_DETAIL, UNREACHABLE_DETAIL)], "resting"),
    ):
        if group:
            until = min(k.exhausted_until for k in group if k.exhausted_until)
            times.append(until)
            reasons.append(f"{len(group)} {label} until {until:%Y-%m-%d %H:%M} UTC")
    if limited := by_status.get(ApiKey.Status.LIMIT_REACHED):
        reset = next_quota_day_start(now)
        times.append(reset)
        reasons.append(
            f"{len(limited)} at their daily limit until midnight {settings.QUOTA_TIMEZONE} "
            f"({reset.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC)"
        )
    if invalid := by_status.get(ApiKey.Status.INVALID):
        reasons.append(f"{len(invalid)} invalid ({invalid[0].invalid_reason})")
    if unreachable := [k for k in by_status.get(ApiKey.Status.UNREACHABLE, []) if k not in cooling]:
        reasons.append(f"{len(unreachable)} unreachable ({unreachable[0].last_error[:120]})")
    if disabled := by_status.get(ApiKey.Status.DISABLED):
        reasons.append(f"{len(disabled)} disabled")
    if failed := [k for k in by_status.get(ApiKey.Status.ACTIVE, []) if k.pk in exclude]:
        reasons.append(f"{len(failed)} failed for this request ({failed[0].last_error[:120]})")
    if len(reasons) == 1 and invalid and len(invalid) == len(keys):
        summary = f"All {len(keys)} Gemini keys are invalid" if len(keys) > 1 else "The only Gemini key is invalid"
        return NoUsableKey(f"{summary} ({invalid[0].invalid_reason}); fix or replace them.")
    # Retired for every key that would otherwise serve it: no wait or fix of keys brings it back.
    retired = gone[0].detail if gone and not waiting and not none and not cooling and not limited else ""
    return NoUsableKey(
        f"No usable Gemini key: {', '.join(reasons)}.", min(times) if times and not failed else None, retired
    )


def _error_fields(error: str) -> dict[str, object]:
    return {"last_error": error[:1000], "last_error_at": timezone.now()}


def report(lease: Lease, error: GeminiError | None = None, usage: CallUsage | None = None) -> Decimal:
    """The one failure policy: what the outcome of a call made with `lease` does to its key.

    None, RequestRejected and Refused mean the key worked (Gemini answered); the request's own
    fate (fail it, try the next key, back off) is the caller's to decide. A generation's call
    (the lease has a caller) is also written to the usage ledger, with one INSERT. Returns the
    call's estimated cost.
    """
    spent = _record(lease, error, usage) if lease.caller is not None else Decimal(0)
    if error is None or isinstance(error, Refused | RequestRejected):  # Google took the call
        pacing.accepted(lease.slots)
    if isinstance(error, KeyExhausted):
        # Batch quota is its own: a batch's 429 teaches only its limit, an online call's only theirs.
        if not error.capacity and lease.batch == (pacing.period_of(error.quota_id) == pacing.Period.BATCH_TOKENS):
            pacing.learn(lease.key_id, lease.project, lease.model, error.quota_id, error.limit)
        _rest(lease, error)
    elif isinstance(error, KeyRejected):
        _set_invalid(lease, str(error))
    elif isinstance(error, ModelUnavailable):
        _retire(lease, str(error))
    elif isinstance(error, LocationRefused):
        ApiKey.objects.filter(pk=lease.key_id).update(**_error_fields(f"location refused: {error}"))
        log.warning("Google refused the location of key %s's calls: %s", lease.masked, error)
    elif isinstance(error, KeyUnreachable):
        _set_unreachable(lease, str(error))
    elif isinstance(error, UnreadableAnswer):
        log.warning("Gemini's answer to key %s could not be read: %s", lease.masked, error)  # not the key's doing
    elif isinstance(error, UpstreamUnavailable):
        _count_failure(lease, str(error))
    elif lease.failures_before or lease.unreachable:  # only a key with a failure streak needs a write
        ApiKey.objects.filter(pk=lease.key_id).update(consecutive_failures=0, unreachable=False)
    return spent


def _outcome(error: GeminiError | None) -> str:
    if error is None:
        return UsageRecord.Outcome.IMAGE
    if isinstance(error, Refused):
        return UsageRecord.Outcome.REFUSED
    if isinstance(error, KeyExhausted):
        return UsageRecord.Outcome.EXHAUSTED
    if isinstance(error, UnreadableAnswer):
        return UsageRecord.Outcome.UNREADABLE
    if isinstance(error, KeyRejected | RequestRejected | ModelUnavailable | LocationRefused):
        return UsageRecord.Outcome.REJECTED
    return UsageRecord.Outcome.FAILED


def _record(lease: Lease, error: GeminiError | None, usage: CallUsage | None) -> Decimal:
    """The call's ledger row and metrics. Outside any transaction: the call happened, whatever follows."""
    caller = lease.caller or Caller()
    latency = error.latency_ms if error is not None else None
    if usage is None:  # a refusal still used its prompt's and its thinking's tokens
        usage = (
            replace(error.usage, latency_ms=latency)
            if error is not None and error.usage
            else CallUsage(latency_ms=latency)
        )
    images, prompt, thinking = usage.images, usage.prompt_tokens, usage.thinking_tokens
    price = (lease.model, caller.resolution, images, prompt, thinking, lease.free_tier, lease.is_vertex)
    spent = pricing.cost(*price, tier=caller.tier)
    saved = Decimal(0)
    if caller.tier == Price.Tier.BATCH:
        saved = max(pricing.cost(*price, tier=Price.Tier.STANDARD) - spent, Decimal(0))
    outcome = _outcome(error)
    quota_id = error.quota_id[:120] if isinstance(error, KeyExhausted) else ""
    now = timezone.now()
    UsageRecord.objects.create(
        created_at=now,
        day=quota_day(now),
        key_id=lease.key_id,
        key_label=f"{lease.label or 'key'} {lease.masked}"[:140],
        kind=lease.kind,
        project=lease.project,
        model=lease.model,
        resolution=caller.resolution or "1K",  # Gemini's default size
        user_id=caller.user_id,
        door=caller.door,
        job_id=caller.job_id,
        outcome=outcome,
        quota_id=quota_id,
        detail=str(error)[:300] if error is not None else "",
        prompt_tokens=usage.prompt_tokens,
        output_tokens=usage.output_tokens,
        thinking_tokens=usage.thinking_tokens,
        images=usage.images,
        latency_ms=usage.latency_ms,
        cost=spent,
        tier=caller.tier or settings.PRICE_TIER,
        saved=saved,
    )
    metrics.observe_call(lease.model, caller.door, outcome, lease.kind, quota_id, usage.latency_ms)
    metrics.observe_saving(lease.model, caller.door, lease.kind, saved)
    return spent


def rest_for(error: KeyExhausted, now: dt.datetime, previous: KeyRest | None = None) -> tuple[str, dt.datetime]:
    """(KeyRest.Kind, until) for a 429: what its quota id and retry delay say is spent, and for how long.

    A per-minute quota refused again right after its rest ended (`previous`) rests a whole minute at
    least: its retry delay proved too short. A limit of 0 (no quota for the model at all) is tried
    again the next quota day, when an upgraded plan shows. Vertex AI's busy capacity rests the model
    on that key or project for seconds."""
    quota_id = error.quota_id
    if error.capacity:  # tried again soon; a minute when it was busy again right after the last rest
        again = previous is not None and previous.kind == KeyRest.Kind.CAPACITY and previous.until <= now
        return KeyRest.Kind.CAPACITY, now + (MINUTE_REST_DEFAULT if again else CAPACITY_REST)
    if error.limit == 0:
        return KeyRest.Kind.NO_QUOTA, next_quota_day_start(now)
    if "PerDay" in quota_id:
        return KeyRest.Kind.DAY, next_quota_day_start(now)
    if "PerMinute" in quota_id or (not quota_id and error.retry_after is not None):
        wait = error.retry_after or MINUTE_REST_DEFAULT
        again = previous is not None and previous.kind == KeyRest.Kind.MINUTE and previous.until <= now
        return KeyRest.Kind.MINUTE, now + (max(wait, MINUTE_REST_DEFAULT) if again else wait)
    return KeyRest.Kind.UNKNOWN, now + dt.timedelta(hours=settings.KEY_COOLDOWN_HOURS)


def _rest(lease: Lease, error: KeyExhausted) -> None:
    """429: rest that model on this key, or on every key of its project (they share the quota)."""
    now = timezone.now()
    scope = scope_of(lease.key_id, lease.project)
    previous = KeyRest.objects.filter(**scope, model=lease.rest_model, until__gt=now - MINUTE_REST_DEFAULT).first()
    kind, until = rest_for(error, now, previous)
    _keep_rest(lease, kind, until, error.quota_id, str(error))
    ApiKey.objects.filter(pk=lease.key_id).update(**_error_fields(f"429 {error}"))


def _retire(lease: Lease, said: str) -> None:
    """404 "no longer available to new users": the model rests on this key's project until the next
    quota day (an older project may still have it), and operators see what Gemini said."""
    _keep_rest(lease, KeyRest.Kind.RETIRED, next_quota_day_start(), "", said)
    ModelNotice.objects.update_or_create(model=lease.model, defaults={"notice": said[:500], "seen_at": timezone.now()})
    ApiKey.objects.filter(pk=lease.key_id).update(**_error_fields(f"404 {said}"))


def _keep_rest(lease: Lease, kind: str, until: dt.datetime, quota_id: str, detail: str) -> None:
    now = timezone.now()
    scope = scope_of(lease.key_id, lease.project)
    fields = {"kind": kind, "quota_id": quota_id[:120], "until": until, "detail": detail[:300], "created_at": now}
    for _ in range(3):  # another worker may create the same rest at the same moment
        try:
            with transaction.atomic():
                KeyRest.objects.update_or_create(**scope, model=lease.rest_model, defaults=fields)
            break
        except IntegrityError:
            continue
    where = f"project {lease.project}" if lease.project else f"key {lease.masked}"
    log.warning("%s rests on %s until %s (%s)", lease.rest_model or "Every model", where, until.isoformat(), detail)


def _set_unreachable(lease: Lease, error: str) -> None:
    """No connection at all: rest the key as after repeated upstream errors, and say why."""
    ApiKey.objects.filter(pk=lease.key_id).update(
        unreachable=True,
        exhausted_until=timezone.now() + REST_AFTER_FAILURES,
        exhausted_detail=UNREACHABLE_DETAIL,
        consecutive_failures=0,
        **_error_fields(error),
    )
    log.warning("Key %s is unreachable: %s", lease.masked, error)


def _set_invalid(lease: Lease, reason: str) -> None:
    ApiKey.objects.filter(pk=lease.key_id).update(invalid=True, invalid_reason=reason[:300], **_error_fields(reason))
    log.warning("Key %s set aside as invalid: %s", lease.masked, reason)


def _count_failure(lease: Lease, error: str) -> None:
    ApiKey.objects.filter(pk=lease.key_id).update(
        consecutive_failures=F("consecutive_failures") + 1, **_error_fields(error)
    )
    ApiKey.objects.filter(pk=lease.key_id, consecutive_failures__gte=FAILURES_BEFORE_REST).update(
        exhausted_until=timezone.now() + REST_AFTER_FAILURES,
        exhausted_detail=REST_DETAIL,
        consecutive_failures=0,
    )


def same_route(lease: Lease) -> set[int]:
    """The keys whose calls leave the way `lease`'s do (the same base URL, through the same proxy):
    a location Google refuses is theirs too."""
    route = _route(lease.proxy)
    return {
        key.pk
        for key in ApiKey.objects.filter(base_url=lease.base_url).only("pk", "proxy_encrypted")
        if _route(key.proxy) == route
    }


def _route(proxy_url: str) -> str:
    proxy = credentials.proxy(proxy_url)
    return proxy.route if proxy else ""


def kinds_serving(model: str) -> set[str]:
    """The kinds of credential that can serve `model` (the catalogue says which models Vertex AI has)."""
    served = MODELS.get(model)
    if served is not None and served.vertex_id is None:
        return {ApiKey.Kind.AI_STUDIO}
    return set(ApiKey.Kind.values)


def usable_keys(model: str = "", paced: bool = True) -> QuerySet[ApiKey]:
    """Keys usable now (for `model`, when given: not resting for it; with `paced` False, a rest until
    a full window ends doesn't count)."""
    sql, params = _usable("k", quota_day(), timezone.now(), model, paced)
    return ApiKey.objects.filter(pk__in=RawSQL(f"SELECT k.id FROM keys_apikey AS k WHERE {sql}", params))


def require_usable_key(model: str, max_wait: float) -> None:
    """Raise NoUsableKey unless a key can serve `model` now or within `max_wait` seconds (a short rest)."""
    if usable_keys(model).exists():
        return
    none = explain_no_usable_key(model=model)
    if none.retry_after is None or (none.retry_after - timezone.now()).total_seconds() > max_wait:
        raise none


def reset_daily() -> str:
    """The daily reset: counters of past quota days to zero, expired cooldowns cleared."""
    today, now = quota_day(), timezone.now()
    counters = ApiKey.objects.exclude(count_day=today).exclude(count_today=0).update(count_today=0, count_day=today)
    cooldowns = ApiKey.objects.filter(exhausted_until__lte=now).update(exhausted_until=None, exhausted_detail="")
    cooldowns += KeyRest.objects.filter(until__lte=now).delete()[0]
    pacing.prune(now)
    summary = (
        f"Key pool reset for quota day {today}: {counters} counter(s) zeroed, "
        f"{cooldowns} cooldown(s) cleared, {usable_keys().count()} key(s) usable."
    )
    log.info(summary)
    return summary
