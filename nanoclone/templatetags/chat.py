"""Words the chat page uses for a job's phase and failure codes."""

from __future__ import annotations

import json
import re

from django import template
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import mark_safe

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


# What to do after a refusal Google gave no words for.
ADVICE = {
    Job.ErrorCode.BLOCKED: "Rephrase the prompt and send it again.",
    Job.ErrorCode.IMAGE_SAFETY: "Try a different prompt.",
}
MARKDOWN_LINK = re.compile(r"\[([^\]]+)\]\((https?://[^\s)]+)\)")
CODE = re.compile(r"\s*\((?:[A-Z][A-Z0-9]*_)*[A-Z][A-Z0-9]*\)")  # "(IMAGE_SAFETY)", "(PROHIBITED_CONTENT)"


@register.filter
def failure_title(turn: Job) -> str:
    """What a failed turn's card says first, in the user's words (no error codes: they are for the API)."""
    codes = Job.ErrorCode
    return str(codes(turn.error_code).label) if turn.error_code in codes.values else str(codes.INTERNAL.label)


@register.filter
def failure_detail(turn: Job) -> str:
    """The card's text under its title, never the title again: for a refusal, what Google said (its
    Markdown links made links) or else what to do; for another failure, its message without codes."""
    if turn.refusal and turn.error_code in ADVICE:
        said = str(turn.refusal.get("message") or "").strip()
        if not said:
            return ADVICE[turn.error_code]  # type: ignore[index]
        linked = MARKDOWN_LINK.sub(r'<a href="\2" target="_blank" rel="noopener nofollow">\1</a>', str(escape(said)))
        return mark_safe(f"Google said: “{linked}”")  # escaped above; only our own tags added
    detail = CODE.sub("", turn.error).strip()
    return "" if detail.rstrip(".") == failure_title(turn) else detail


@register.filter
def seconds_since_sent(turn: Job) -> int:
    """Whole seconds since the prompt was sent, by the server's clock (the page counts on from there,
    so a browser whose clock differs still shows the right time)."""
    return max(0, int((timezone.now() - turn.created_at).total_seconds()))


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
