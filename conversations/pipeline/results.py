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
    def __init__(self, code: Job.ErrorCode, message: str, retry_after: dt.datetime | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


@dataclass
class Generated:
    """What generate_all() made: every answer by image index, the images stored so far, and the
    answer still to store (the job's last image: stored with its success, in one transaction)."""

    answers: dict[int, gemini.GeminiAnswer]
    outputs: dict[int, Image]
    last: tuple[int, gemini.GeminiAnswer, pool.Lease] | None
    edited_from: uuid.UUID | None


def _stored_file(job: Job, answer: gemini.GeminiAnswer) -> tuple[storage.StoredImage, str | None]:
    """The answer's image stored as its file, with Gemini's own base64 of it when the bytes are
    those Gemini sent (the answer reuses it) or None when a door asked for another format or size."""
    # Gemini may return several image parts; the first is the image for this slot.
    image = answer.images[0]
    data = image.data
    # Doors that promise a pixel size or format Gemini doesn't produce ask for it here.
    if output := job.options.get("output"):
        size = (output["width"], output["height"]) if output.get("width") and output.get("height") else None
        data = transform.convert(data, output.get("format"), size)
    stored = storage.store(data)  # content-addressed: a file stored twice is one file
    if job.options.get(DISPLAY_RENDITION):
        renditions.ensure_display(stored.file)
    return stored, image.base64 if data is image.data else None


def _output_row(
    job: Job,
    index: int,
    answer: gemini.GeminiAnswer,
    stored: tuple[storage.StoredImage, str | None],
    cost: Decimal,
    edited_from: uuid.UUID | None,
    message: Message | None = None,
) -> Image:
    file, encoded = stored
    row = Image.objects.create(
        **file.fields,
        user=job.user,
        conversation=job.conversation,
        message=message,
        job=job,
        role=Image.Role.OUTPUT,
        index=index,
        prompt=job.user_message.text,
        model=job.model,
        thought_signature=answer.images[0].thought_signature,
        edited_from_id=edited_from,
        cost=cost,
    )
    row.encoded = encoded
    return row


def store_output(job: Job, index: int, answer: gemini.GeminiAnswer, cost: Decimal, made: Generated) -> Image:
    """One image of several, stored as soon as it is made (its progress shows)."""
    stored = _stored_file(job, answer)
    try:
        with transaction.atomic():
            hold(job)  # still this run's, so a run that was taken over doesn't store the image twice
            return _output_row(job, index, answer, stored, cost, made.edited_from)
    except LeaseLost:  # cancelled or taken over meanwhile: no file without its row
        Image.delete_unreferenced_files(stored[0].file, stored[0].thumbnail)
        raise


def succeed(job: Job, made: Generated, move: Callable[..., None]) -> Job:
    """Record the answer and finish the job, the last image with them: one transaction."""
    move(phase=Job.Phase.SAVING, progress=95)
    answers, outputs = made.answers, made.outputs
    first = answers[min(answers)] if answers else None
    stored = _stored_file(job, made.last[1]) if made.last else None
    now = timezone.now()

    def total(attribute: str) -> int | None:
        values = [getattr(a, attribute) for a in answers.values() if getattr(a, attribute) is not None]
        return sum(values) if values else None

    finished = committed = False
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
            done = {
                "state": Job.State.SUCCEEDED,
                "phase": Job.Phase.DONE,
                "progress": 100,
                "assistant_message": message,
                "updated_at": now,
                "finished_at": now,
                "lease_until": None,
            }
            # Still this run's? Else another run took over meanwhile, and its outcome stands.
            finished = bool(
                Job.objects.filter(pk=job.pk, state=Job.State.RUNNING, attempts=job.attempts).update(**done)
            )
            if not finished:
                transaction.set_rollback(True)
            else:
                if outputs:  # stored one by one before: theirs is this answer too
                    Image.objects.filter(job=job, role=Image.Role.OUTPUT).update(message=message)
                if made.last is not None and stored is not None:
                    index, answer, lease = made.last
                    cost = pool.report(lease, None, answer.usage)  # its ledger row goes with its image
                    outputs[index] = _output_row(job, index, answer, stored, cost, made.edited_from, message)
        committed = True
    finally:
        if made.last is not None and stored is not None and not (committed and finished):
            pool.report(made.last[2], None, made.last[1].usage)  # the call happened: its ledger row stands
            Image.delete_unreferenced_files(stored[0].file, stored[0].thumbnail)
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


def fail(job: Job, code: Job.ErrorCode, message: str, retry_after: dt.datetime | None = None) -> Job:
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
