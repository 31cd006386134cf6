"""Words the chat page uses for a job's phase and failure codes."""

from __future__ import annotations

import json

from django import template

from conversations import chat
from conversations.models import Job
from gallery.models import Image
from keys.catalogue import resolve_model

register = template.Library()

PHASES = {
    "queued": "Waiting for a worker",
    "initializing": "Starting",
    "waiting": "Waiting for a key (quota resting)",
    "generating": "Generating",
    "saving": "Saving the image",
    "done": "Done",
}


@register.filter
def phase_label(phase: str) -> str:
    return PHASES.get(phase, phase)


@register.filter
def failure_title(code: str) -> str:
    return Job.ErrorCode(code).label if code in Job.ErrorCode.values else "Generation failed"


@register.filter
def model_label(model_id: str) -> str:
    model = resolve_model(model_id) if model_id else None
    return model.label if model else model_id


@register.filter
def css_ratio(aspect_ratio: str) -> str:
    """`16:9` as CSS `aspect-ratio` wants it (`16 / 9`), so a pending image holds its final shape."""
    width, _, height = (aspect_ratio or "1:1").partition(":")
    if not (width.isdigit() and height.isdigit() and int(width) and int(height)):
        return "1 / 1"
    return f"{int(width)} / {int(height)}"


@register.filter
def turn_version(turn: Job) -> str:
    return chat.version(turn)


@register.filter
def slots(turn: Job) -> list[Image | None]:
    """A pending turn's images in order: those stored so far, None for those still being made."""
    stored = {image.index: image for image in getattr(turn, "outputs", [])}
    return [stored.get(index) for index in range(turn.num_images)]


@register.filter
def refused(turn: Job) -> bool:
    """Gemini refused the prompt itself or answered without an image: the same prompt again would
    likely end the same, so it goes back in the box to be rephrased."""
    return turn.error_code in Job.REFUSED or bool(turn.refusal)


@register.filter
def reference_list(turn: Job) -> str:
    """The turn's reference images as the prompt box takes them back ([{id, thumbnail}], JSON)."""
    inputs = getattr(turn.user_message, "inputs", [])
    return json.dumps([{"id": str(image.id), "thumbnail": image.thumbnail_url()} for image in inputs])
