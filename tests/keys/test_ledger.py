"""The usage ledger: one row per upstream Gemini call, written by pool.report(), whatever the call
ended in; each retry and failover is a call of its own. And what each call is estimated to cost."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django_q.models import Schedule

from conversations import pipeline
from conversations.models import Job
from gallery.models import Image
from keys import pricing, usage
from keys.models import Price, UsageRecord
from tests.conftest import emulator_requests

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("default_prices")]


def generate(user: Any, prompt: str = "a red kite", source: str = "api", **fields: Any) -> Job:
    request = pipeline.GenerationRequest(user=user, prompt=prompt, source=source, **fields)
    return pipeline.start(request, pipeline.RunMode.INLINE)


def outcomes() -> list[tuple[str, str]]:
    return [(row.key_label.split()[0], row.outcome) for row in UsageRecord.objects.order_by("created_at", "id")]


def test_an_image_is_one_row_with_who_asked_through_which_door_and_what_it_used(user: Any, add_key: Any) -> None:
    key = add_key("emu-ok-0001", label="main", project="proj-a")
    job = generate(user, source="evolink", resolution="2K")
    assert job.state == Job.State.SUCCEEDED, job.error
    row = UsageRecord.objects.get()
    assert (row.key_id, row.key_label, row.project) == (key.pk, f"main {key.masked}", "proj-a")
    assert (row.model, row.resolution, row.outcome, row.images) == ("gemini-nano-banana-2.1", "2K", "image", 1)
    assert (row.user_id, row.door, row.job_id) == (user.pk, "evolink", str(job.id))
    assert row.prompt_tokens and row.output_tokens == job.assistant_message.output_tokens  # type: ignore[union-attr]
    assert row.latency_ms is not None and row.latency_ms >= 0
    assert row.cost == Decimal("0.050400") + Decimal("1.50") * row.prompt_tokens / 1_000_000


def test_each_image_of_a_job_is_a_call_of_its_own(user: Any, add_key: Any) -> None:
    add_key()
    assert generate(user, num_images=3).state == Job.State.SUCCEEDED
    assert UsageRecord.objects.filter(outcome="image").count() == 3


def test_a_429_and_the_failover_after_it_are_two_rows_with_the_quota_id(user: Any, add_key: Any, emu: Any) -> None:
    add_key("emu-429-aaaa", label="spent")
    add_key("emu-ok-bbbb", label="fresh")
    assert generate(user).state == Job.State.SUCCEEDED
    assert outcomes() == [("spent", "429"), ("fresh", "image")]
    exhausted = UsageRecord.objects.get(outcome="429")
    assert exhausted.quota_id == "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
    assert (exhausted.cost, exhausted.images) == (Decimal(0), 0)
    assert len(emulator_requests(emu)) == 2  # as many rows as calls


def test_upstream_errors_are_counted_as_calls_each_retry_too(user: Any, add_key: Any, emu: Any, settings: Any) -> None:
    settings.UPSTREAM_RETRIES = 2
    add_key("emu-500-aaaa", label="broken")
    job = generate(user)
    assert job.state == Job.State.FAILED
    assert outcomes() == [("broken", "failed")] * 3
    assert len(emulator_requests(emu)) == 3
    assert "500" in UsageRecord.objects.first().detail  # type: ignore[union-attr]


def test_refusals_and_rejected_keys_are_recorded(user: Any, add_key: Any) -> None:
    add_key("emu-invalid-aaaa", label="bad")
    add_key("emu-ok-bbbb", label="good")
    assert generate(user, prompt="a cat [block]").state == Job.State.FAILED
    assert outcomes() == [("bad", "rejected"), ("good", "refused")]


def test_no_call_no_row(user: Any) -> None:
    assert generate(user).error_code == Job.ErrorCode.NO_USABLE_KEY
    assert not UsageRecord.objects.exists()


STANDARD = [
    ("gemini-nano-banana-2.1", "1K", "0.033600"),
    ("gemini-nano-banana-2.1", "2K", "0.050400"),
    ("gemini-nano-banana-2.1", "4K", "0.075600"),
    ("gemini-3.1-flash-image", "512", "0.044820"),
    ("gemini-3.1-flash-image", "1K", "0.067200"),
    ("gemini-3.1-flash-image", "2K", "0.100800"),
    ("gemini-3.1-flash-image", "4K", "0.151200"),
    ("gemini-3-pro-image", "1K", "0.134400"),
    ("gemini-3-pro-image", "2K", "0.134400"),
    ("gemini-3-pro-image", "4K", "0.240000"),
    ("gemini-3.1-flash-lite-image", "1K", "0.033600"),
]


def test_every_model_and_resolution_of_the_catalogue_has_a_default_price() -> None:
    from keys.catalogue import MODELS

    wanted = {(model.id, size) for model in MODELS.values() for size in model.resolutions}
    assert {(model, size) for model, size, _ in STANDARD} == wanted
    for tier in ("standard", "batch"):
        assert set(Price.objects.filter(tier=tier).values_list("model", "resolution")) == wanted


@pytest.mark.parametrize(("model", "resolution", "per_image"), STANDARD)
def test_each_image_stores_its_estimated_cost(
    model: str, resolution: str, per_image: str, user: Any, add_key: Any
) -> None:
    add_key()
    job = generate(user, model=model, resolution=resolution)
    assert job.state == Job.State.SUCCEEDED, job.error
    row = UsageRecord.objects.get()
    price = Price.objects.get(model=model, resolution=resolution, tier="standard")
    assert price.per_image == Decimal(per_image)
    assert row.prompt_tokens is not None
    expected = (price.per_image + price.input_per_million * row.prompt_tokens / 1_000_000).quantize(Decimal("1e-6"))
    assert row.cost == expected
    assert Image.objects.get(job=job, role=Image.Role.OUTPUT).cost == expected


def test_the_batch_tier_costs_half(settings: Any) -> None:
    settings.PRICE_TIER = "batch"
    assert pricing.cost("gemini-3-pro-image", "4K", 1) == Decimal("0.120000")
    assert pricing.cost("gemini-3.1-flash-image", "", 2, prompt_tokens=1_000_000) == Decimal("0.317200")


def test_thinking_tokens_are_priced_at_the_text_output_rate() -> None:
    assert pricing.cost("gemini-3-pro-image", "1K", 1, thinking_tokens=250_000) == Decimal("3.134400")
    assert pricing.cost("gemini-3-pro-image", "1K", 1, free_tier=True) == 0
    assert pricing.cost("gemini-unknown-image", "1K", 1) == 0  # no price: no estimate


def test_a_free_tier_keys_calls_cost_nothing(user: Any, add_key: Any) -> None:
    add_key(free_tier=True)
    job = generate(user)
    assert UsageRecord.objects.get().cost == 0
    assert Image.objects.get(job=job, role=Image.Role.OUTPUT).cost == 0


def test_a_price_edited_in_the_admin_applies_to_the_next_call(user: Any, add_key: Any) -> None:
    add_key()
    pricing.prices()  # cached now
    price = Price.objects.get(model="gemini-nano-banana-2.1", resolution="1K", tier="standard")
    price.per_image, price.input_per_million = Decimal("0.5"), Decimal(0)
    price.save()
    generate(user)
    assert UsageRecord.objects.get().cost == Decimal("0.5")


def test_old_records_are_pruned_by_a_daily_schedule(user: Any, settings: Any) -> None:
    from django.utils import timezone

    settings.USAGE_RETENTION_DAYS = 30
    now = timezone.now()
    for age in (31, 29):
        at = now - dt.timedelta(days=age)
        UsageRecord.objects.create(created_at=at, day=at.date(), model="m", outcome="image", images=1)
    assert "1 record(s) older than 30 days deleted" in usage.prune()
    assert UsageRecord.objects.count() == 1
    schedule = Schedule.objects.get(name="Daily usage-ledger pruning")
    assert (schedule.func, schedule.schedule_type) == ("keys.usage.prune", Schedule.DAILY)
