"""A conversation as Gemini sees it: the turns history() sends with a job's prompt, images and
thought signatures kept, and which image the job's outputs edit."""

from __future__ import annotations

import datetime as dt
import uuid

from django.conf import settings
from django.db.models import QuerySet

from conversations.models import Job, Message
from gallery import storage
from gallery.models import Image
from keys.gemini import client as gemini

# Job option of a turn run again (the chat's Regenerate and Retry): the id of the first turn, whose
# history the new job gets, so Gemini makes new images for the prompt instead of editing that turn's.
REGENERATES = "regenerates"


def history(job: Job) -> list[gemini.Turn]:
    """The conversation so far as Gemini turns, then this job's prompt: first the turns the caller
    brought along (EarlierTurn: the messages no job asked or answered), then the successful turns."""
    return history_and_edited(job)[0]


def history_and_edited(job: Job) -> tuple[list[gemini.Turn], uuid.UUID | None]:
    """history(), and the image the job's outputs edit as Gemini sees it, from the same reads: the
    job's last reference when it has some (the gallery image that was; None for an upload), else
    the last image of the latest earlier turn that has images."""
    brought = Message.objects.filter(
        conversation=job.conversation,
        job__isnull=True,
        answer_to__isnull=True,
        status=Message.Status.COMPLETED,
        created_at__lt=job.user_message.created_at,
    ).order_by("created_at")
    turns = [turn_of(message)[0] for message in brought]
    edited_from = None
    earlier = _earlier_turns(job).select_related("user_message", "assistant_message")
    for past in reversed(list(earlier)):
        turns.append(turn_of(past.user_message)[0])
        if past.assistant_message:
            reply = past.assistant_message
            outputs = list(reply.images.filter(role=Image.Role.OUTPUT).order_by("index"))
            images = [(storage.read(image.file), image.mime_type, image.thought_signature) for image in outputs]
            turns.append(gemini.Turn("model", reply.text, reply.thought_signature, images))
            edited_from = outputs[-1].pk if outputs else edited_from  # oldest first: the latest wins
    prompt, inputs = turn_of(job.user_message)
    turns.append(prompt)
    return turns, (inputs[-1].original_id if inputs else edited_from)


def edited_by(job: Job) -> uuid.UUID | None:
    """history_and_edited()'s image the job's outputs edit, without reading any image: what a batch's
    collection needs, its history having gone to Google when it was sent."""
    inputs = job.user_message.images.filter(role=Image.Role.INPUT).order_by("-index")
    if (last := inputs.values_list("original_id").first()) is not None:  # (None,): an upload
        return last[0]
    return _latest_images(_earlier_turns(job)).values_list("pk", flat=True).first()


def edited_next(conversation_id: uuid.UUID) -> Image | None:
    """The image the conversation's next prompt edits when it brings no reference: the last image
    of its latest successful turn (a turn still being made is not in the history yet)."""
    return _latest_images(_succeeded_turns(conversation_id)).first()


def _earlier_turns(job: Job) -> QuerySet[Job]:
    """The successful turns history() gives Gemini before this job's prompt, newest first: those
    before this turn or, for a turn run again, those before the turn it runs again."""
    before = job.created_at
    if first := job.options.get(REGENERATES):  # a turn run again gets that turn's history
        turn_of = Job.objects.filter(pk=first, conversation=job.conversation_id)
        before = turn_of.values_list("created_at", flat=True).first() or before
    return _succeeded_turns(job.conversation_id, before)


def _succeeded_turns(conversation_id: uuid.UUID, before: dt.datetime | None = None) -> QuerySet[Job]:
    """A conversation's latest successful turns (before `before`), newest first, as many as history() sends."""
    succeeded = Job.objects.filter(conversation=conversation_id, state=Job.State.SUCCEEDED)
    if before is not None:
        succeeded = succeeded.filter(created_at__lt=before)
    return succeeded.order_by("-created_at")[: settings.HISTORY_TURNS]


def _latest_images(turns: QuerySet[Job]) -> QuerySet[Image]:
    """The output images of these turns, latest first: the first is the one Gemini edits when they
    are its history (the last image of the latest turn that has images)."""
    images = Image.objects.filter(job__in=turns.values("pk"), role=Image.Role.OUTPUT)
    return images.order_by("-job__created_at", "-index")


def turn_of(message: Message, inputs: list[Image] | None = None) -> tuple[gemini.Turn, list[Image]]:
    """A user message, or a model turn the caller brought along, with its input images (and their
    rows: read unless the caller has them in hand, in order)."""
    if inputs is None:
        inputs = list(message.images.filter(role=Image.Role.INPUT).order_by("index"))
    images = [(storage.read(image.file), image.mime_type, image.thought_signature) for image in inputs]
    role = "model" if message.role == Message.Role.ASSISTANT else "user"
    return gemini.Turn(role, message.text, message.thought_signature, images), inputs
