"""What a run made, kept: each image stored as its file (content-addressed) and its row, the job
finished as succeeded or failed in one transaction, and the job_finished signal sent."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from conversations.models import Job, Message
from conversations.pipeline.leases import LeaseLost, hold
from conversations.signals import job_finished
from gallery import renditions, storage, transform
from gallery.models import Image
from keys import pool
from keys.gemini import client as gemini

log = logging.getLogger(__name__)

# Job option of a door that shows each image as soon as it is stored (the chat): its display
# rendition is made while storing, so the page never waits for it to be made on first view.
DISPLAY_RENDITION = "display_rendition"


class GenerationFailed(Exception):
    def __init__(
        self,
        code: Job.ErrorCode,
        message: str,
        retry_after: dt.datetime | None = None,
        refusal: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.refusal = refusal  # Gemini's own word, when it answered without an image


@dataclass
class Generated:
    """What a run made: every answer by image slot, the images stored so far by index, and the
    answers still to store with the job's success, in one transaction (an online run's last slot; a
    batch's every slot).

    A job of n images makes n calls, one per slot; an answer with several images keeps them all,
    the first in its slot's index and the others after every slot's (n, n + 1, ...)."""

    answers: dict[int, gemini.GeminiAnswer]
    outputs: dict[int, Image]
    unstored: list[tuple[int, gemini.GeminiAnswer, pool.Lease]]
    edited_from: uuid.UUID | None

    def slots_done(self, num_images: int) -> int:
        return sum(1 for index in self.outputs if index < num_images)

    def next_extra_index(self, num_images: int) -> int:
        return max(num_images, max(self.outputs, default=-1) + 1)


@dataclass(frozen=True)
class _Kept:
    """One image of an answer, stored as its file."""

    file: storage.StoredImage
    encoded: str | None  # Gemini's own base64 of it, when the file holds the bytes Gemini sent
    signature: str


def _stored_files(job: Job, answer: gemini.GeminiAnswer) -> list[_Kept]:
    """The answer's images stored as files (content-addressed: a file stored twice is one file)."""
    kept = []
    for image in answer.images:
        data = image.data
        # Doors that promise a pixel size or format Gemini doesn't produce ask for it here.
        if output := job.options.get("output"):
            size = (output["width"], output["height"]) if output.get("width") and output.get("height") else None
            data = transform.convert(data, output.get("format"), size)
        as_sent = data is image.data
        # The reader already checked Gemini's bytes (type, end, header, checksums): not again.
        info = storage.ImageInfo.of(image.mime_type, image.width, image.height) if as_sent and image.width else None
        stored = storage.store(data, info)
        if job.options.get(DISPLAY_RENDITION):
            renditions.ensure_display(stored.file, data)
        kept.append(_Kept(stored, image.base64 if as_sent else None, image.thought_signature))
    return kept


def _output_rows(
    job: Job,
    slot: int,
    kept: list[_Kept],
    cost: Decimal,
    made: Generated,
    message: Message | None = None,
) -> None:
    """An answer's images as the job's outputs (into made.outputs), the call's cost shared among them."""
    share = (cost / len(kept)).quantize(Decimal("0.000001"))
    for number, each in enumerate(kept):
        index = slot if number == 0 else made.next_extra_index(job.num_images)
        row = Image.objects.create(
            **each.file.fields,
            user=job.user,
            conversation=job.conversation,
            message=message,
            job=job,
            role=Image.Role.OUTPUT,
            index=index,
            prompt=job.user_message.text,
            model=job.model,
            thought_signature=each.signature,
            edited_from_id=made.edited_from,
            cost=share,
        )
        row.encoded = each.encoded
        made.outputs[index] = row


def _forget(kept: list[_Kept]) -> None:
    for each in kept:
        Image.delete_unreferenced_files(each.file.file, each.file.thumbnail)


def store_output(job: Job, slot: int, answer: gemini.GeminiAnswer, cost: Decimal, made: Generated) -> None:
    """One slot's images of several, stored as soon as they are made (its progress shows)."""
    kept = _stored_files(job, answer)
    try:
        with transaction.atomic():
            hold(job)  # still this run's, so a run that was taken over doesn't store the image twice
            _output_rows(job, slot, kept, cost, made)
    except LeaseLost:  # cancelled or taken over meanwhile: no file without its row
        _forget(kept)
        raise


def succeed(job: Job, made: Generated, move: Callable[..., None]) -> Job:
    """Record the answer and finish the job, the images not stored yet with them: one transaction.
    Each of those images' calls gets its ledger row in it too, so it is written once, whatever happens."""
    move(phase=Job.Phase.SAVING, progress=95)
    answers, outputs = made.answers, made.outputs
    first = answers[min(answers)] if answers else None
    kept = [(slot, answer, lease, _stored_files(job, answer)) for slot, answer, lease in made.unstored]
    now = timezone.now()

    def total(attribute: str) -> int | None:
        values = [getattr(a, attribute) for a in answers.values() if getattr(a, attribute) is not None]
        return sum(values) if values else None

    done = {
        "state": Job.State.SUCCEEDED,
        "phase": Job.Phase.DONE,
        "progress": 100,
        "updated_at": now,
        "finished_at": now,
        "lease_until": None,
    }
    finished = False
    try:
        with transaction.atomic():
            message = Message.objects.create(
                conversation=job.conversation,
                role=Message.Role.ASSISTANT,
                text=first.text if first else "",
                thought_signature=first.text_signature if first else "",
                model=job.model,
                prompt_tokens=total("prompt_tokens"),
                output_tokens=total("output_tokens"),
                total_tokens=total("total_tokens"),
                grounding=first.grounding if first else None,
                created_at=now,
            )
            if outputs:  # stored one by one before: theirs is this answer too
                Image.objects.filter(job=job, role=Image.Role.OUTPUT).update(message=message)
            for slot, answer, lease, files in kept:
                cost = pool.report(lease, None, answer.usage)  # its ledger row goes with its images
                _output_rows(job, slot, files, cost, made, message)
            # The state is written last, so whoever reads the job finished finds its answer and
            # every image, even a reader of uncommitted rows. Still this run's? Else another run
            # took over meanwhile, its outcome stands, and all of this rolls back.
            done["assistant_message"] = message
            finished = bool(
                Job.objects.filter(pk=job.pk, state=Job.State.RUNNING, attempts=job.attempts).update(**done)
            )
            if not finished:
                transaction.set_rollback(True)
    finally:
        if not finished:
            for _slot, answer, lease, files in kept:
                if not lease.batch:  # an online call happened: its ledger row stands (a batch's: when collected)
                    pool.report(lease, None, answer.usage)
                _forget(files)
    if not finished:
        job.refresh_from_db()  # the other run's outcome
        return job
    for name, value in done.items():  # what the UPDATE wrote, without reading the row back
        setattr(job, name, value)
    images = [outputs[index] for index in sorted(outputs)]
    for image in images:
        image.message = message
    job.outputs = images  # type: ignore[attr-defined]  # output_images() reads it, as chat's to_attr
    notify(job_finished, job)
    return job


def fail(
    job: Job,
    code: Job.ErrorCode,
    message: str,
    retry_after: dt.datetime | None = None,
    refusal: dict[str, str] | None = None,
) -> Job:
    now = timezone.now()
    with transaction.atomic():
        # Nothing half-saved: images of a failed job go (their files too, unless this rolls back).
        Image.objects.filter(job=job, role=Image.Role.OUTPUT).delete_with_files()
        answer = Message.objects.create(
            conversation=job.conversation,
            role=Message.Role.ASSISTANT,
            model=job.model,
            status=Message.Status.FAILED,
            error=message,
            created_at=now,
        )
        failed = Job.objects.filter(pk=job.pk, state=Job.State.RUNNING, attempts=job.attempts).update(
            state=Job.State.FAILED,
            phase=Job.Phase.DONE,
            error_code=code,
            error=message,
            refusal=refusal,
            retry_after=retry_after,
            assistant_message=answer,
            updated_at=now,
            finished_at=now,
            lease_until=None,
        )
        if not failed:  # another run took over meanwhile (or it finished): its outcome stands
            transaction.set_rollback(True)
    job.refresh_from_db()
    if not failed:
        return job
    log.info("Job %s failed (%s): %s", job.pk, code, message)
    notify(job_finished, job)
    return job


def output_images(job: Job) -> list[Image]:
    """A job's output images in order: those its run left in hand (with Gemini's base64), else read."""
    in_hand: list[Image] | None = getattr(job, "outputs", None)
    if in_hand is not None:
        return in_hand
    return list(Image.objects.filter(job=job, role=Image.Role.OUTPUT).order_by("index"))


def notify(signal: Any, job: Job) -> None:
    for receiver, result in signal.send_robust(sender=Job, job=job):
        if isinstance(result, Exception):
            log.error("Receiver %s failed for job %s: %s", receiver, job.pk, result, exc_info=result)
