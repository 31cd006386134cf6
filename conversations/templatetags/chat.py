"""Words the chat page uses for a job's phase and failure codes."""

from __future__ import annotations

from django import template

from nanoclone.gemini_models import resolve_model

register = template.Library()

PHASES = {
    "queued": "Waiting for a worker",
    "initializing": "Starting",
    "generating": "Generating",
    "saving": "Saving the image",
    "done": "Done",
}

FAILURES = {
    "no_usable_key": "No usable Gemini key",
    "blocked": "Gemini blocked this prompt",
    "image_safety": "Image withheld for safety (IMAGE_SAFETY)",
    "no_image": "No image in Gemini's answer",
    "request_rejected": "Gemini rejected the request",
    "upstream_error": "Gemini is unavailable",
    "cancelled": "Cancelled",
    "internal": "Something went wrong",
}


@register.filter
def phase_label(phase: str) -> str:
    return PHASES.get(phase, phase)


@register.filter
def failure_title(code: str) -> str:
    return FAILURES.get(code, "Generation failed")


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
