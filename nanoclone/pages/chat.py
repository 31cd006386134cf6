"""The chat pages: a conversation sidebar, the thread, the prompt box, and the fragments htmx swaps in."""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.files.uploadedfile import UploadedFile
from django.db.models import QuerySet
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from conversations import chat, pipeline
from conversations.models import Conversation, Job
from conversations.references import Reference
from keys import pool
from keys.catalogue import resolve_model
from nanoclone.api.image_serializers import caller_base_url
from nanoclone.models import StudioDefaults
from nanoclone.pages import PageRequest, sidebar

SOURCE = sidebar.SOURCE
NEW_IMAGE = "new_image"  # job option: the prompt asked for a new image, not an edit (the turn says so)
OTHERS = sidebar.OTHERS
# How long a request for a pending turn waits for news (long polling), well within serve's shutdown grace.
LONG_POLL_SECONDS = 10.0


def _made_elsewhere(request: PageRequest) -> QuerySet[Conversation]:
    return sidebar.made_elsewhere(request.user)


def _sidebar(request: PageRequest, others: bool = False) -> list[Conversation]:
    return sidebar.for_request(request, others)


def _limits() -> dict[str, int]:
    return {
        "max_images": settings.MAX_REFERENCE_IMAGES,
        "max_mb": settings.MAX_IMAGE_BYTES // (1024 * 1024),
        "max_prompt": settings.MAX_PROMPT_CHARS,
    }


PREFILLED = ("prompt", "model", "aspect_ratio", "resolution", "thinking_level")
STARTING = ("model", "aspect_ratio", "resolution", "thinking_level", "num_images")


def _starting_settings(request: PageRequest, last: Job | None) -> dict[str, Any]:
    """What the prompt box starts with: the conversation's last turn; in a new chat, the settings
    page's defaults, or else the settings of the user's last prompt (a new chat keeps them, the
    batch price included)."""
    if last is None:
        defaults = StudioDefaults.objects.filter(user=request.user).first()
        if defaults is not None and not defaults.use_last:
            return {name: getattr(defaults, name) for name in STARTING} | {"grounding": False, "batch": False}
        last = Job.objects.filter(user=request.user, source=SOURCE).order_by("-created_at").first()
    if last is None:
        return {"model": settings.DEFAULT_MODEL, "num_images": 1, "grounding": False, "batch": False}
    batch = last.priority == Job.Priority.BATCH
    return {name: getattr(last, name) for name in STARTING} | {"grounding": last.grounding, "batch": batch}


@login_required
@require_GET
def chat_page(request: PageRequest, conversation_id: uuid.UUID | None = None) -> HttpResponse:
    conversation = None
    if conversation_id is not None:
        conversation = get_object_or_404(Conversation, pk=conversation_id, user=request.user)
    turns = [chat.with_place(turn) for turn in chat.turns(conversation)] if conversation else []
    prefill = _starting_settings(request, turns[-1] if turns else None)
    # "Reuse prompt" from the gallery lands here with the prompt and its settings.
    prefill |= {name: request.GET[name] for name in PREFILLED if request.GET.get(name)}
    prefill.setdefault("prompt", "")
    model = resolve_model(prefill["model"])  # an alias in a link or the settings picks its model
    prefill["model"] = model.id if model else ""
    others = request.GET.get("conversations") == OTHERS
    models = chat.model_choices()
    return render(
        request,
        "conversations/chat.html",
        {
            "conversation": conversation,
            "conversations": _sidebar(request, others),
            "others": others,
            "others_count": None if others else _made_elsewhere(request).count(),
            "turns": turns,
            # The image the next prompt edits (None: it makes a new one).
            "editing": pipeline.edited_next(conversation.pk) if conversation else None,
            "models": models,
            "choice": next((each for each in models if each["id"] == prefill["model"]), models[0]),
            "counts": range(1, pipeline.MAX_IMAGES_PER_JOB + 1),
            "prefill": prefill,
            "limits": _limits(),
            "key_notice": chat.key_notice(),
        },
    )


def _read_uploads(files: list[UploadedFile]) -> list[Reference]:
    """Reference uploads as bytes, refusing oversized files before reading them into memory."""
    for number, upload in enumerate(files, start=1):
        if (upload.size or 0) > settings.MAX_IMAGE_BYTES:
            raise pipeline.InvalidRequest(
                "images",
                f"Reference image {number} ({upload.name}) is larger than {_limits()['max_mb']} MB.",
            )
    return [upload.read() for upload in files]


def _composer_error(request: PageRequest, message: str, status: int) -> HttpResponse:
    if not request.htmx:
        return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")
    response = render(request, "conversations/_composer_error.html", {"message": message}, status=status)
    response["HX-Retarget"] = "#composer-error"
    response["HX-Reswap"] = "innerHTML"
    return response


def _turn_response(request: PageRequest, job: Job, new_conversation: bool) -> HttpResponse:
    url = reverse("chat-conversation", args=[job.conversation_id])
    if not request.htmx:
        return redirect(url)
    response = render(
        request,
        "conversations/_sent.html",
        {
            "turn": chat.turn(request.user, job.id),
            "conversation": job.conversation,
            "conversations": _sidebar(request),
            "first_turn": new_conversation,
        },
    )
    if new_conversation:
        response["HX-Push-Url"] = url
    return response


def _new_image(request: PageRequest, conversation_id: str | None) -> dict[str, Any]:
    """Job options for a prompt that makes a new image in a conversation rather than editing its last
    one: Gemini gets no earlier turn. The pipeline gives a turn the history of the turn REGENERATES
    names; the conversation's first turn had none."""
    if request.POST.get("mode") != "new" or not conversation_id:
        return {}
    first = Job.objects.filter(conversation_id=conversation_id, user=request.user).order_by("created_at")
    first_id = first.values_list("pk", flat=True).first()
    return {pipeline.REGENERATES: str(first_id), NEW_IMAGE: True} if first_id else {}


def _in_users_words(message: str, uploads: list[UploadedFile]) -> str:
    """A reference's error names the file the user picked, not the form field ("images[0]")."""
    names = [upload.name for upload in uploads]
    return re.sub(
        r"\(images\[(\d+)\]\)",
        lambda found: f"({names[int(found[1])]})" if int(found[1]) < len(names) else "",
        message,
    ).replace(" :", ":")


@login_required
@require_POST
def send(request: PageRequest) -> HttpResponse:
    """Submit a prompt from the prompt box; answers at once with the pending turn (at the batch price,
    one that waits for a Gemini batch)."""
    conversation_id = request.POST.get("conversation_id") or None
    uploads = request.FILES.getlist("images")
    try:
        job = pipeline.start(
            pipeline.GenerationRequest(
                user=request.user,
                prompt=request.POST.get("prompt", ""),
                model=request.POST.get("model") or None,
                aspect_ratio=request.POST.get("aspect_ratio") or None,
                thinking_level=request.POST.get("thinking_level") or None,
                grounding=request.POST.get("grounding") == "1",
                resolution=request.POST.get("resolution") or None,
                conversation_id=conversation_id,
                references=[
                    *_read_uploads(uploads),
                    *(value for value in request.POST.getlist("reference_image_ids") if value),
                ],
                source=SOURCE,
                base_url=caller_base_url(request),
                num_images=_count(request.POST.get("num_images")),
                options={pipeline.DISPLAY_RENDITION: True, **_new_image(request, conversation_id)},
                priority=Job.Priority.BATCH if request.POST.get("batch") == "1" else None,
            ),
            pipeline.RunMode.BACKGROUND,
        )
    except pipeline.InvalidRequest as invalid:
        message = _in_users_words(invalid.message, uploads)
        return _composer_error(request, message, 404 if invalid.status == 404 else 422)
    except pool.NoUsableKey as none:  # only at the batch price: no key can submit a batch
        return _composer_error(request, none.message, 422)
    return _turn_response(request, job, new_conversation=conversation_id is None)


def _count(value: str | None) -> int:
    """The prompt box's image count; the pipeline checks its range."""
    if not value:
        return 1
    try:
        return int(value)
    except ValueError as error:
        message = f"The number of images must be a whole number, not '{value}'."
        raise pipeline.InvalidRequest("num_images", message) from error


def _own_turn(request: PageRequest, job_id: uuid.UUID) -> Job:
    try:
        return chat.turn(request.user, job_id)
    except Job.DoesNotExist as missing:
        raise Http404("No such turn.") from missing


@login_required
@require_GET
def turn_answer(request: PageRequest, job_id: uuid.UUID) -> HttpResponse:
    """The answer half of a turn. A pending answer asks again with `after` (what it shows): the
    request is held until the turn moves, up to LONG_POLL_SECONDS, and answers with the news."""
    seen = request.GET.get("after")
    if not seen:
        return render(request, "conversations/_answer.html", {"turn": _own_turn(request, job_id)})
    try:
        turn = chat.wait_for_change(request.user, job_id, seen, LONG_POLL_SECONDS)
    except Job.DoesNotExist as missing:
        raise Http404("No such turn.") from missing
    return render(request, "conversations/_answer.html", {"turn": turn})


@login_required
@require_POST
def retry(request: PageRequest, job_id: uuid.UUID) -> HttpResponse:
    """Run a finished turn again as a new turn: Retry after a failure, Regenerate after a success."""
    job = _own_turn(request, job_id)
    if not job.finished:
        return _composer_error(request, "This turn is still running.", 409)
    try:
        new_job = chat.regenerate(job)
    except pipeline.InvalidRequest as invalid:
        return _composer_error(request, invalid.message, 422)
    except pool.NoUsableKey as none:
        return _composer_error(request, none.message, 422)
    return _turn_response(request, new_job, new_conversation=False)


@login_required
@require_POST
def cancel(request: PageRequest, job_id: uuid.UUID) -> HttpResponse:
    """Stop a turn still being made (a turn that finished meanwhile stays as it finished). The page
    hears of it as of any move, through the answer's own request for news."""
    chat.cancel(_own_turn(request, job_id))
    return HttpResponse(status=204)


@login_required
@require_POST
def rename(request: PageRequest, conversation_id: uuid.UUID) -> HttpResponse:
    conversation = get_object_or_404(Conversation, pk=conversation_id, user=request.user)
    title = " ".join(request.POST.get("title", "").split())[:200]
    if not title:
        return _composer_error(request, "A conversation needs a title.", 422)
    Conversation.objects.filter(pk=conversation.pk).update(title=title)
    return redirect("chat-conversation", conversation.pk)


@login_required
@require_POST
def delete(request: PageRequest, conversation_id: uuid.UUID) -> HttpResponse:
    chat.delete_conversation(get_object_or_404(Conversation, pk=conversation_id, user=request.user))
    return redirect("chat")
