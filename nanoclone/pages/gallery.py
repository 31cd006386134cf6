"""The gallery pages: a filtered, endlessly scrolling grid and a lightbox with each image's details."""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.html import format_html_join
from django.utils.safestring import SafeString
from django.views.decorators.http import require_GET, require_POST

from conversations import chat
from conversations.models import Conversation
from gallery import browse, bulk, lineage, storage
from gallery.models import Board, Image
from keys.catalogue import MODELS
from nanoclone.pages import PageRequest
from nanoclone.templatetags.text import clip

CONVERSATION_CHOICES = 200


@login_required
@require_GET
def gallery_page(request: PageRequest) -> HttpResponse:
    filters = browse.Filters.from_query(request.GET)
    found = browse.images(request.user, filters)
    if request.GET.get("fragment") == "count":
        return render(request, "gallery/_count.html", {"total": found.count(), "filters": filters})
    page = browse.page(
        found, request.GET.get("after", ""), settings.GALLERY_PAGE_SIZE, through=request.GET.get("through", "")
    )
    context = {"page": page, "filters": filters, "after": request.GET.get("after", "")}
    if request.htmx and request.GET.get("fragment") == "items":
        return render(request, "gallery/_items.html", context)
    boards = list(Board.objects.filter(user=request.user))
    board = next((board for board in boards if board.pk == filters.board), None)
    context |= {
        "boards": boards,
        "board": board,
        "board_share_url": request.build_absolute_uri(reverse("board-shared", args=[board.share_token()]))
        if board
        else "",
        "share_days": settings.SIGNED_URL_MAX_AGE // 86400,
        # A search's count checks every image against the matches (27 ms for a common word at
        # 100,000 images, longer than the page): the page asks for it once shown (fragment=count).
        "total": None if filters.q else found.count(),
        "conversation_options": _conversation_options(request.user, filters.conversation),
        "models": list(MODELS.values()),
        "continued": bool(request.GET.get("after")),
    }
    return render(request, "gallery/gallery.html", context)


def _conversation_options(user: User, selected: str) -> SafeString:
    """The conversation filter's options, written here: a template loop over 200 took 12 ms, a
    third of the page's time."""
    rows = Conversation.objects.filter(user=user).values_list("id", "title")[:CONVERSATION_CHOICES]
    return format_html_join(
        "",
        '<option value="{}"{}>{}</option>',
        ((pk, " selected" if str(pk) == selected else "", clip(title or "Untitled", 48)) for pk, title in rows),
    )


def _own_image(request: PageRequest, image_id: uuid.UUID) -> Image:
    return get_object_or_404(
        Image.objects.select_related("job", "message", "conversation"),
        pk=image_id,
        user=request.user,
        role=Image.Role.OUTPUT,
    )


def _continue_url(image: Image) -> str:
    """Where "Continue editing" goes: the image's conversation, or a new chat with it as its reference."""
    if chat.continues_editing(image):
        return reverse("chat-conversation", args=[image.conversation_id])
    return f"{reverse('chat')}?{urlencode({'reference': image.pk})}"


@login_required
@require_GET
def image_page(request: PageRequest, image_id: uuid.UUID) -> HttpResponse:
    """An image with its details: the lightbox's content (htmx) or a page of its own."""
    image = _own_image(request, image_id)
    reuse = {"prompt": image.prompt, "model": image.model}
    if image.job:
        reuse |= {"aspect_ratio": image.job.aspect_ratio, "resolution": image.job.resolution}
    context = {
        "image": image,
        "reuse_url": f"{reverse('chat')}?{urlencode({k: v for k, v in reuse.items() if v})}",
        "continue_url": _continue_url(image),
        "lineage": lineage.of(image),
        "share_url": request.build_absolute_uri(image.signed_url()),
        "share_days": settings.SIGNED_URL_MAX_AGE // 86400,
    }
    template = "gallery/_lightbox.html" if request.htmx else "gallery/image.html"
    return render(request, template, context)


@login_required
@require_POST
def favorite(request: PageRequest, image_id: uuid.UUID) -> HttpResponse:
    image = _own_image(request, image_id)
    browse.set_favorite(image, request.POST.get("favorite", "1" if not image.favorite else "0") == "1")
    if request.htmx:
        response = render(request, "gallery/_favorite.html", {"image": image})
        response["HX-Trigger"] = json.dumps({"imageFavorited": {"id": str(image.pk), "favorite": image.favorite}})
        return response
    return redirect("gallery-image", image.pk)


@login_required
@require_POST
def delete(request: PageRequest, image_id: uuid.UUID) -> HttpResponse:
    image = _own_image(request, image_id)
    browse.delete_image(image)
    if request.htmx:
        response = HttpResponse("")
        if reverse("gallery-image", args=[image_id]) in (request.htmx.current_url or ""):
            response["HX-Redirect"] = reverse("gallery")  # deleted from its own page: nothing left to show
        response["HX-Trigger"] = json.dumps({"imageDeleted": {"id": str(image_id)}})
        return response
    return redirect("gallery")


def _back(request: PageRequest) -> HttpResponse:
    """Back to the gallery as the person left it (its filters), never to another site."""
    back = request.POST.get("back", "")
    return redirect(back if back.startswith(reverse("gallery")) else reverse("gallery"))


@login_required
@require_POST
def selection_zip(request: PageRequest) -> HttpResponseBase:
    """The selected images' originals as one ZIP, streamed while it is written."""
    images = list(bulk.selected(request.user, request.POST.getlist("ids")))
    if not images:
        return HttpResponse("Select at least one image.", status=400, content_type="text/plain; charset=utf-8")
    if storage.check() != "ok":  # said now: once streaming, a failure could only cut the download short
        raise storage.StoreUnavailable("the store does not answer")
    response = StreamingHttpResponse(bulk.zip_stream(images), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="nanoclone-{len(images)}-images.zip"'
    return response


@login_required
@require_POST
def selection(request: PageRequest) -> HttpResponse:
    """Favourite, unfavourite, delete, or add to (or take off) a board, the selected images."""
    images = bulk.selected(request.user, request.POST.getlist("ids"))
    action = request.POST.get("action", "")
    count = images.count()
    if not count:
        messages.error(request, "Select at least one image.")
    elif action in ("favorite", "unfavorite"):
        bulk.set_favorite(images, action == "favorite")
        messages.success(
            request, f"{'Added' if action == 'favorite' else 'Removed'} {count} favourite{'s' * (count > 1)}."
        )
    elif action == "delete":
        bulk.delete(images)
        messages.success(request, f"Deleted {count} image{'s' * (count > 1)}.")
    elif action == "board":
        name = request.POST.get("new_board", "").strip()
        chosen = request.POST.get("board", "")
        board = (
            bulk.board_named(request.user, name)
            if name
            else Board.objects.filter(user=request.user, pk=chosen if chosen.isdigit() else 0).first()
        )
        if board is None:
            messages.error(request, "Choose a board, or name a new one.")
        else:
            bulk.add_to_board(board, images)
            messages.success(request, f"Added {count} image{'s' * (count > 1)} to {board.name}.")
    elif action == "unboard":
        chosen = request.POST.get("board", "")
        board = Board.objects.filter(user=request.user, pk=chosen if chosen.isdigit() else 0).first()
        if board is not None:
            bulk.remove_from_board(board, images)
            messages.success(request, f"Took {count} image{'s' * (count > 1)} off {board.name}.")
    else:
        messages.error(request, f"Unknown action {action!r}.")
    return _back(request)


@login_required
@require_POST
def rename_board(request: PageRequest, board_id: int) -> HttpResponse:
    board = get_object_or_404(Board, pk=board_id, user=request.user)
    name = request.POST.get("name", "").strip()
    if not name or len(name) > Board._meta.get_field("name").max_length:  # type: ignore[operator]
        messages.error(request, "A board's name is 1 to 100 characters.")
    elif Board.objects.filter(user=request.user, name=name).exclude(pk=board.pk).exists():
        messages.error(request, f"You have a board named {name} already.")
    else:
        board.name = name
        board.save(update_fields=["name"])
        messages.success(request, f"Renamed the board to {name}.")
    return redirect(f"{reverse('gallery')}?{urlencode({'board': board.pk})}")


@login_required
@require_POST
def delete_board(request: PageRequest, board_id: int) -> HttpResponse:
    board = get_object_or_404(Board, pk=board_id, user=request.user)
    board.delete()
    messages.success(request, f"Deleted the board {board.name}; its images stay in the gallery.")
    return redirect("gallery")


@require_GET
def shared_board(request: HttpRequest, token: str) -> HttpResponse:
    """A board's images for whoever has its share link, without logging in: thumbnails and originals
    through signed URLs, nothing else of the owner's."""
    board = Board.shared(token)
    if board is None:
        raise Http404("This link has expired or the board was deleted.")
    images = board.images.filter(role=Image.Role.OUTPUT).order_by("-created_at")[: settings.GALLERY_PAGE_SIZE * 4]
    response = render(request, "gallery/shared_board.html", {"board": board, "images": images})
    response["X-Robots-Tag"] = "noindex"
    return response
