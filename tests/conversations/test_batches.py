"""Jobs at the Batch API's price (pipeline.batches) against the emulator's Batch API over a real
socket: packed by model onto an AI Studio key, submitted once, polled, collected into the gallery
and the ledger at the batch tier, exactly once whatever step is repeated."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db.models import Sum

from conversations import pipeline
from conversations.models import Batch, Job
from conversations.pipeline import batches
from gallery.models import Image
from keys import pacing, pool
from keys.gemini import client as gemini
from keys.models import ApiKey, KeyRest, QuotaLimit, UsageRecord
from tests.conftest import batches_finished, emulator_requests

pytestmark = pytest.mark.django_db(transaction=True)


def batch_job(user: Any, prompt: str, **fields: Any) -> Job:
    request = pipeline.GenerationRequest(
        user=user, prompt=prompt, source="jobs", priority=Job.Priority.BATCH, model="gemini-3.1-flash-image", **fields
    )
    return pipeline.start(request, pipeline.RunMode.QUEUE)


def batch_creates(emu: Any) -> list[dict[str, Any]]:
    return [r for r in emulator_requests(emu) if r.get("api") == "batch"]


def test_batch_jobs_share_one_batch_and_finish_at_half_the_price(
    quick_batches: Any, add_key: Any, user: Any, default_prices: None
) -> None:
    add_key()
    jobs = [batch_job(user, "a red fox"), batch_job(user, "a blue whale", num_images=2)]
    assert all(job.state == Job.State.PENDING for job in jobs)
    assert pipeline.claim_next() is None  # not the online queue's
    done = batches_finished(*jobs)
    assert [job.state for job in done] == [Job.State.SUCCEEDED, Job.State.SUCCEEDED]
    assert Image.objects.filter(job__in=done, role=Image.Role.OUTPUT).count() == 3
    (batch,) = Batch.objects.all()
    assert batch.state == Batch.State.COLLECTED and batch.items == 3 and batch.name.startswith("batches/")
    assert [r["items"] for r in batch_creates(quick_batches)] == [3]
    assert not [r for r in emulator_requests(quick_batches) if r.get("api") != "batch"]  # no online call
    rows = UsageRecord.objects.filter(job_id__in=[str(job.pk) for job in done])
    assert rows.count() == 3 and set(rows.values_list("tier", flat=True)) == {"batch"}
    cost, saved = rows.aggregate(c=Sum("cost"))["c"], rows.aggregate(s=Sum("saved"))["s"]
    # Half the standard price: what it cost is what it saved (each rounded to a millionth of a dollar).
    assert cost > 0 and abs(cost - saved) <= Decimal("0.000001") * rows.count()
    key = ApiKey.objects.get()
    assert key.count_today == 0  # batch items count toward no online daily limit


def test_a_batch_google_took_before_its_submitter_died_is_found_not_sent_again(
    quick_batches: Any, add_key: Any, user: Any
) -> None:
    add_key()
    job = batch_job(user, "a lighthouse")
    batches.pack()
    batch = Batch.objects.get()
    # The submitter sent it, then died before storing the name.
    lease = batches._lease(Batch.objects.select_related("key").get())
    assert lease is not None
    turns, _ = pipeline.history(Job.objects.get(pk=job.pk)), None
    gemini.submit_batch(lease, batch.model, [gemini.BatchItem(f"{job.pk}:0", turns, gemini.Options())], str(batch.pk))
    (done,) = batches_finished(job)
    assert done.state == Job.State.SUCCEEDED
    assert len(batch_creates(quick_batches)) == 1
    assert UsageRecord.objects.filter(job_id=str(job.pk)).count() == 1


def test_collecting_again_stores_nothing_twice(quick_batches: Any, add_key: Any, user: Any) -> None:
    add_key()
    first, second = batch_job(user, "one"), batch_job(user, "two")
    batches_finished(first, second)
    # A collection cut off and done again (another process, after the step's time ran out).
    Batch.objects.update(state=Batch.State.SUBMITTED, next_look_at="2000-01-01T00:00:00Z")
    Job.objects.filter(pk=second.pk).update(state=Job.State.RUNNING, phase=Job.Phase.BATCHED)
    Image.objects.filter(job=second).delete()
    UsageRecord.objects.filter(job_id=str(second.pk)).delete()
    batches_finished(first, second)
    assert Image.objects.filter(job=first, role=Image.Role.OUTPUT).count() == 1
    assert Image.objects.filter(job=second, role=Image.Role.OUTPUT).count() == 1
    assert UsageRecord.objects.filter(job_id=str(first.pk)).count() == 1
    assert UsageRecord.objects.filter(job_id=str(second.pk)).count() == 1


def test_an_item_gemini_refused_fails_its_job_alone(quick_batches: Any, add_key: Any, user: Any) -> None:
    add_key()
    good, bad = batch_job(user, "a castle"), batch_job(user, "something forbidden [block]")
    good, bad = batches_finished(good, bad)
    assert good.state == Job.State.SUCCEEDED
    assert bad.state == Job.State.FAILED and bad.error_code == Job.ErrorCode.BLOCKED
    assert bad.refusal and bad.refusal["blockReason"]
    assert UsageRecord.objects.filter(job_id=str(bad.pk), outcome=UsageRecord.Outcome.REFUSED).count() == 1


def test_an_expired_batch_fails_its_jobs_or_makes_them_online_where_allowed(
    quick_batches: Any, add_key: Any, user: Any
) -> None:
    add_key()
    strict = batch_job(user, "a tower [batchexpire]")
    (strict,) = batches_finished(strict)
    assert strict.state == Job.State.FAILED and strict.error_code == Job.ErrorCode.BATCH_ENDED
    assert "expired" in strict.error
    lenient = batch_job(user, "a bridge [batchexpire]", batch_fallback=True)
    batches.tick()
    deadline = time.monotonic() + 10
    while Job.objects.get(pk=lenient.pk).priority == Job.Priority.BATCH and time.monotonic() < deadline:
        batches.tick()
        time.sleep(0.1)
    assert Job.objects.get(pk=lenient.pk).state == Job.State.PENDING
    claimed = pipeline.claim_next()  # now the online queue's
    assert claimed is not None and claimed.pk == lenient.pk


def test_a_batch_429_rests_batch_submission_only_and_the_batch_goes_to_another_key(
    quick_batches: Any, add_key: Any, user: Any
) -> None:
    busy = add_key("emu-batch429-0001")
    job = batch_job(user, "a meadow")
    batches.pack()
    batches.tick()  # submitted on the busy key: refused, back in line
    rest = KeyRest.objects.get()
    assert rest.model == f"{pool.BATCH_REST}gemini-3.1-flash-image" and rest.key_id == busy.pk
    assert pool.usable_keys("gemini-3.1-flash-image").filter(pk=busy.pk).exists()  # online calls go on
    other = add_key("emu-ok-0002")
    (done,) = batches_finished(job)
    assert done.state == Job.State.SUCCEEDED
    assert Batch.objects.get(state=Batch.State.COLLECTED).key_id == other.pk


def test_cancelling_takes_a_job_out_and_cancels_the_gemini_batch_with_its_last_job(
    quick_batches: Any, add_key: Any, user: Any
) -> None:
    add_key()
    quick_batches.batch_seconds = 30
    first, second = batch_job(user, "a kite"), batch_job(user, "a boat")
    batches.tick()
    batch = Batch.objects.get()
    assert batch.state == Batch.State.SUBMITTED
    assert pipeline.cancel(Job.objects.get(pk=first.pk))
    assert Batch.objects.get().state == Batch.State.SUBMITTED  # the other job still waits in it
    assert pipeline.cancel(Job.objects.get(pk=second.pk))
    batch.refresh_from_db()
    assert batch.state == Batch.State.ENDED
    lease = batches._lease(Batch.objects.select_related("key").get())
    assert lease is not None and gemini.get_batch(lease, batch.name).state == "BATCH_STATE_CANCELLED"


def test_a_job_cancelled_before_its_batch_was_sent_is_left_out(quick_batches: Any, add_key: Any, user: Any) -> None:
    add_key()
    first, second = batch_job(user, "a kite"), batch_job(user, "a boat")
    batches.pack()
    assert pipeline.cancel(Job.objects.get(pk=first.pk))
    batches_finished(second)
    assert [r["items"] for r in batch_creates(quick_batches)] == [1]
    assert Decimal(UsageRecord.objects.filter(job_id=str(first.pk)).count()) == 0


def test_without_an_ai_studio_key_a_batch_job_is_refused_saying_why(
    quick_batches: Any, add_key: Any, user: Any
) -> None:
    add_key("emu-ok-0001", kind=ApiKey.Kind.VERTEX_EXPRESS)
    with pytest.raises(pool.NoUsableKey, match="AI Studio"):
        batch_job(user, "a field")
    assert not Job.objects.exists()


def test_a_batch_beyond_the_inline_limit_goes_as_a_jsonl_file(
    quick_batches: Any, add_key: Any, user: Any, monkeypatch: Any
) -> None:
    add_key()
    monkeypatch.setattr(gemini, "INLINE_BATCH_BYTES", 10)  # every batch is too large to send inline
    lines: list[str] = []
    wire = gemini._wire_request

    def line_of(item: gemini.BatchItem) -> dict[str, Any]:
        lines.append(item.key)
        return wire(item)

    monkeypatch.setattr(gemini, "_wire_request", line_of)
    good, bad = batch_job(user, "a lighthouse", aspect_ratio="16:9"), batch_job(user, "forbidden [block]")
    good, bad = batches_finished(good, bad)
    assert good.state == Job.State.SUCCEEDED and bad.error_code == Job.ErrorCode.BLOCKED
    image = Image.objects.get(job=good, role=Image.Role.OUTPUT)
    assert image.width > image.height  # its options went with it in the file
    assert sorted(lines) == sorted([f"{good.pk}:0", f"{bad.pk}:0"])  # one JSONL line each
    assert UsageRecord.objects.filter(job_id=str(good.pk), tier="batch").count() == 1


def test_batches_fit_the_batch_quota_of_tokens_enqueued(quick_batches: Any, add_key: Any, user: Any) -> None:
    """An operator's limit of tokens enqueued in batches: a batch is halved until it fits, and the
    rest waits until a batch finishes. Online calls don't count toward it."""
    key = add_key()
    one = gemini.input_tokens([], "a lamp", 0)
    pacing.set_operator_limit(key.pk, "", "", QuotaLimit.Period.BATCH_TOKENS, one * 2)
    quick_batches.batch_seconds = 1.0
    jobs = [batch_job(user, "a lamp") for _ in range(3)]
    batches.tick()
    assert [b.items for b in Batch.objects.order_by("created_at")] == [2]  # halved: 3 would not fit
    assert pacing.admit(key.pk, "", "gemini-3.1-flash-image", tokens=10_000) is not None  # online: no limit
    batches_finished(*jobs)
    assert sorted(b.items for b in Batch.objects.all()) == [1, 2]  # the third once the first finished


def test_operators_see_the_batches_in_the_admin(quick_batches: Any, add_key: Any, user: Any, client: Any) -> None:
    add_key()
    batches_finished(batch_job(user, "a windmill"))
    batch = Batch.objects.get()
    client.force_login(get_user_model().objects.create_superuser("root", password="pw-root-123"))
    listing = client.get("/admin/conversations/batch/").content.decode()
    assert batch.name in listing and "collected" in listing
    assert client.get(f"/admin/conversations/batch/{batch.pk}/change/").status_code == 200  # to read


def test_a_batch_turn_edits_the_conversations_last_image_as_an_online_one_does(
    quick_batches: Any, add_key: Any, user: Any
) -> None:
    add_key()
    first = pipeline.start(
        pipeline.GenerationRequest(user=user, prompt="a red kite", model="gemini-3.1-flash-image"),
        pipeline.RunMode.INLINE,
    )
    (done,) = batches_finished(batch_job(user, "now at sunset", conversation_id=first.conversation_id))
    edited = Image.objects.get(job=done, role=Image.Role.OUTPUT)
    assert edited.edited_from_id == Image.objects.get(job=first, role=Image.Role.OUTPUT).pk
    assert [r["inline_images"] for r in emulator_requests(quick_batches) if r.get("api") != "batch"] == [0]


def test_a_batch_priced_request_waits_for_a_batch_whatever_the_doors_run_mode(
    quick_batches: Any, add_key: Any, user: Any
) -> None:
    add_key()
    for mode in (pipeline.RunMode.INLINE, pipeline.RunMode.BACKGROUND):
        request = pipeline.GenerationRequest(user=user, prompt=f"a pier, {mode}", priority=Job.Priority.BATCH)
        assert pipeline.start(request, mode).state == Job.State.PENDING
    assert not emulator_requests(quick_batches)  # nothing ran online
    assert [job.state for job in batches_finished(*Job.objects.all())] == [Job.State.SUCCEEDED] * 2
