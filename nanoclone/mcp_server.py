"""NanoClone as an MCP server: AI agents generate and edit images through the key pool and the gallery.

One MCPServer (the official `mcp` SDK), two transports:

- stdio: `python manage.py mcp`, acting as NANOCLONE_MCP_USER (default: the first superuser);
- streamable HTTP at /mcp on `serve` (mounted by nanoclone.asgi through `HttpTransport`): every
  request carries one of the REST API's tokens (`Authorization: Bearer <token>`) and acts as its user.

Tools are plain functions: the SDK runs them on worker threads, where the ORM and the pipeline may
block as they do in a view. A tool never generates by itself: it builds a pipeline.GenerationRequest
and maps the finished job back. Failures an agent can act on (no usable key, blocked prompt, bad
input) are raised as ToolError, which the SDK returns as an `isError` result with the message.
"""

import base64
import binascii
import datetime as dt
import io
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.from_thread
import PIL.Image
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connections
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import CallToolResult, ContentBlock, ImageContent, TextContent, ToolAnnotations
from pydantic import Field

from conversations import pipeline
from conversations.models import Conversation, Job
from conversations.signals import job_progress
from gallery import storage
from gallery.models import Image
from keys import pool
from keys.models import ApiKey, quota_day
from nanoclone import safe_fetch
from nanoclone.auth import KEYWORDS, user_for_token
from nanoclone.gemini_models import ALIASES, MODELS

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"
# Long side of the preview an image result carries unless the agent asks for full size.
PREVIEW_SIZE = 768
MIN_RENDITION_SIZE = 64

server: MCPServer = MCPServer(
    "nanoclone",
    title="NanoClone",
    instructions=(
        "Generate and edit images with Google's Gemini image models (Nano Banana) through NanoClone's key "
        "pool. Every image lands in the user's NanoClone gallery. To refine an image, call "
        "continue_conversation with the conversation_id of the result (Gemini sees the whole thread), or "
        "edit_image with its image_id. Image results carry a reduced preview; pass full_size=true for more."
    ),
)


# --- who is calling ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    user: Any
    # scheme://host the agent reached us at, for absolute image URLs ("" when unknown, e.g. stdio).
    base_url: str = ""
    # stdio: the agent runs on this machine and may open the image files directly.
    local: bool = False


# Set per HTTP request by HttpTransport and once for stdio; the SDK carries each message's
# context into the tool call, and anyio copies it into the worker thread.
_caller: ContextVar[Caller | None] = ContextVar("nanoclone_mcp_caller", default=None)


@contextmanager
def acting_as(caller: Caller) -> Iterator[None]:
    token = _caller.set(caller)
    try:
        yield
    finally:
        _caller.reset(token)


def _current() -> Caller:
    caller = _caller.get()
    if caller is None:
        raise ToolError("Not authenticated: connect with a NanoClone API token (Authorization: Bearer <token>).")
    return caller


def stdio_user(username: str = "") -> Any:
    """The user stdio tools act as: `username`, else NANOCLONE_MCP_USER, else the first superuser."""
    users = get_user_model().objects.filter(is_active=True)
    username = username or settings.MCP_USER
    if username:
        user = users.filter(**{get_user_model().USERNAME_FIELD: username}).first()
        if user is None:
            raise LookupError(f"No active user named '{username}' (NANOCLONE_MCP_USER).")
        return user
    user = users.filter(is_superuser=True).order_by("pk").first()
    if user is None:
        raise LookupError(
            "No superuser yet: run `python manage.py serve` once (it creates the admin account), "
            "or `python manage.py createsuperuser`, or set NANOCLONE_MCP_USER to an existing username."
        )
    return user


@contextmanager
def _database() -> Iterator[None]:
    # Tool threads are the SDK's, not Django's request cycle: close what this thread opened,
    # as Django does at the end of a request, so no connection outlives the call.
    try:
        yield
    finally:
        connections.close_all()


# --- input ---------------------------------------------------------------------------------------

_FILE_PATH = re.compile(r"^/files/(?P<id>[0-9a-fA-F-]{32,36})\.(?:png|jpg|webp|bin)$")


def _uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(str(value).strip()))
    except ValueError as error:
        raise ToolError(f"'{value}' is not a valid {what} (expected an id like {uuid.UUID(int=0)}).") from error


def _own_hosts(caller: Caller) -> set[str]:
    hosts = {host.strip("[]").lower() for host in settings.ALLOWED_HOSTS if host != "*"}
    for base in (settings.PUBLIC_URL, caller.base_url):
        if base:
            hosts.add((urlsplit(base).hostname or "").lower())
    return hosts - {""}


def _from_our_url(value: str, caller: Caller) -> bytes | str | None:
    """One of our own /files/ URLs (the ones results hand out): a share link's bytes, else the image id.

    Agents pass those back as references; fetching them over the network would be refused as
    loopback, and the plain URL needs a token anyway. A share link works for anyone, as in a
    browser; a plain URL is an image id, which the pipeline only accepts from its owner.
    """
    parts = urlsplit(value)
    match = _FILE_PATH.match(parts.path)
    relative = not parts.scheme and not parts.netloc  # results carry paths when no host is known (stdio)
    if not match or not (relative or (parts.hostname or "").lower() in _own_hosts(caller)):
        return None
    image_id = _uuid(match["id"], "image id")
    query = parse_qs(parts.query)
    stamp, signature = query.get("ts", [""])[0], query.get("sig", [""])[0]
    if stamp and signature:
        image = Image.objects.filter(pk=image_id).first()
        if image is not None and image.check_signature(stamp, signature):
            return storage.read(image.file)
    return image_id


def _references(values: list[str], caller: Caller) -> tuple[list[bytes], list[uuid.UUID | str]]:
    """Reference images as (uploaded bytes, gallery image ids): URLs, data: URIs or gallery ids."""
    if len(values) > settings.MAX_REFERENCE_IMAGES:
        raise ToolError(f"At most {settings.MAX_REFERENCE_IMAGES} reference images are accepted per request.")
    uploads: list[bytes] = []
    ids: list[uuid.UUID | str] = []
    for number, raw in enumerate(values, start=1):
        value = str(raw).strip()
        try:
            ours = _from_our_url(value, caller)
            if isinstance(ours, bytes):
                uploads.append(ours)
            elif ours is not None:
                ids.append(ours)
            elif value.lower().startswith(("data:", "http://", "https://")):
                uploads.append(safe_fetch.load_image(value))
            else:
                ids.append(_uuid(value, f"reference image {number} (an http(s) URL, a data: URI or a gallery id)"))
        except (safe_fetch.UnsafeURLError, safe_fetch.FetchError) as error:
            raise ToolError(f"Reference image {number}: {error}") from error
    return uploads, ids


# --- image output --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendition:
    """The image bytes one tool result carries, and how they relate to the original."""

    data: bytes
    mime_type: str
    width: int
    height: int
    note: str


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.2f} MB" if size >= 100_000 else f"{size / 1000:.0f} KB"


def _flatten(image: PIL.Image.Image) -> PIL.Image.Image:
    """RGB for JPEG, with transparency over white rather than the black convert() would give."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = PIL.Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _jpeg(image: PIL.Image.Image, longest: int, quality: int) -> tuple[bytes, int, int]:
    scale = min(1.0, longest / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resized = image if size == image.size else image.resize(size, PIL.Image.Resampling.LANCZOS)
    out = io.BytesIO()
    resized.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue(), size[0], size[1]


def rendition(image: Image, full_size: bool = False) -> Rendition:
    """The image within NANOCLONE_MCP_MAX_IMAGE_BYTES: a preview, or the original when asked and it fits.

    Agents pay for every byte in their context window, so the default is a PREVIEW_SIZE JPEG;
    full_size sends the original file when it fits the budget, else the largest JPEG that does.
    """
    budget = settings.MCP_MAX_IMAGE_BYTES
    try:
        original = storage.read(image.file)
    except FileNotFoundError as error:
        raise ToolError(f"The file of image {image.id} is missing on the server; it can't be shown.") from error
    small = max(image.width, image.height) <= PREVIEW_SIZE
    if len(original) <= budget and (full_size or small):
        return Rendition(original, image.mime_type, image.width, image.height, "the original file")
    with PIL.Image.open(io.BytesIO(original)) as source:
        flat = _flatten(source)
    longest = max(flat.size) if full_size else min(max(flat.size), PREVIEW_SIZE)
    quality = 90 if full_size else 85
    while longest >= MIN_RENDITION_SIZE:
        data, width, height = _jpeg(flat, longest, quality)
        if len(data) <= budget:
            if not full_size:
                note = f"a {width}x{height} JPEG preview; pass full_size=true for more detail"
            elif (width, height) == (image.width, image.height):
                note = (
                    f"a full-size JPEG re-encoding: the original {image.format} is {_megabytes(len(original))}, "
                    f"over the {_megabytes(budget)} budget per result"
                )
            else:
                note = (
                    f"a {width}x{height} JPEG downscale, the largest that fits the {_megabytes(budget)} budget per "
                    f"result (the original {image.width}x{image.height} {image.format} is "
                    f"{_megabytes(len(original))}); download the original from its URL"
                )
            return Rendition(data, "image/jpeg", width, height, note)
        # Bytes grow with the pixel count: shrink by the square root of the excess, a little more.
        longest = min(int(longest * 0.9), int(longest * (budget / len(data)) ** 0.5))
    return Rendition(
        b"", "", 0, 0, f"no image attached: the {budget}-byte budget (NANOCLONE_MCP_MAX_IMAGE_BYTES) is too small"
    )


def _absolute(caller: Caller, path: str) -> str:
    base = settings.PUBLIC_URL or caller.base_url
    return f"{base}{path}" if base else path


def _timestamp(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z") if value else None


def describe_image(image: Image, caller: Caller) -> dict[str, Any]:
    info: dict[str, Any] = {
        "image_id": str(image.id),
        "conversation_id": str(image.conversation_id) if image.conversation_id else None,
        "url": _absolute(caller, image.get_absolute_url()),
        "share_url": _absolute(caller, image.signed_url()),
        "share_url_expires": _timestamp(timezone.now() + dt.timedelta(seconds=settings.SIGNED_URL_MAX_AGE)),
        "width": image.width,
        "height": image.height,
        "mime_type": image.mime_type,
        "bytes": image.bytes,
        "prompt": image.prompt,
        "model": image.model,
        "role": image.role,
        "created_at": _timestamp(image.created_at),
    }
    if caller.local:
        info["path"] = str(storage.path_of(image.file))
    return info


def _image_result(image: Image, caller: Caller, full_size: bool, headline: str, model_text: str = "") -> CallToolResult:
    info = describe_image(image, caller)
    sent = rendition(image, full_size)
    info["attached"] = {"mime_type": sent.mime_type, "width": sent.width, "height": sent.height, "note": sent.note}
    lines = [
        f"{headline}: image {info['image_id']} ({image.width}x{image.height} {image.format}, "
        f"{_megabytes(image.bytes)}) in conversation {info['conversation_id']}.",
        f"URL: {info['url']} (needs your NanoClone login or API token)",
        f"Share URL (no login needed until {info['share_url_expires']}): {info['share_url']}",
    ]
    if info.get("path"):
        lines.append(f"File on this machine: {info['path']}")
    lines.append(f"Attached: {sent.note}.")
    if model_text.strip():
        lines.append(f"Gemini said: {model_text.strip()}")
    if info["conversation_id"]:
        lines.append(
            f"To refine it, call continue_conversation(conversation_id='{info['conversation_id']}', prompt=...)."
        )
    content: list[ContentBlock] = [TextContent(type="text", text="\n".join(lines))]
    if sent.data:
        content.append(ImageContent(type="image", data=base64.b64encode(sent.data).decode(), mime_type=sent.mime_type))
    return CallToolResult(content=content, structured_content=info)


def _failure(job: Job) -> ToolError:
    message = job.error or "Generation failed."
    if job.error_code == "no_usable_key" and job.retry_after:
        message += f" A key frees up at {_timestamp(job.retry_after)}; try again then."
    return ToolError(f"{message} (error: {job.error_code or 'failed'}; conversation {job.conversation_id})")


@contextmanager
def _relaying_progress(ctx: Context, job_id: uuid.UUID) -> Iterator[None]:
    """Relay the job's progress to the agent, so a long generation doesn't look hung (and clients
    that reset their timeout on progress keep waiting). A no-op unless the call carried a progress token."""

    def relay(sender: Any, job: Job, **kwargs: Any) -> None:
        if job.pk == job_id:  # the pipeline signals every job in this process
            anyio.from_thread.run(ctx.report_progress, job.progress, 100, f"{job.phase} ({job.model})")

    job_progress.connect(relay, sender=Job, weak=False)
    try:
        yield
    finally:
        job_progress.disconnect(relay, sender=Job)


def _generate(
    caller: Caller,
    ctx: Context,
    full_size: bool,
    headline: str,
    *,
    references: tuple[list[bytes], list[uuid.UUID | str]],
    **fields: Any,
) -> CallToolResult:
    """Run one generation through the pipeline and answer with its image (or a tool error)."""
    uploads, ids = references
    request = pipeline.GenerationRequest(
        user=caller.user, reference_images=uploads, reference_image_ids=ids, source="mcp", **fields
    )
    try:
        job = pipeline.submit(request)
    except pipeline.InvalidRequest as error:
        raise ToolError(error.message) from error
    with _relaying_progress(ctx, job.id):
        job = pipeline.run(job.id) or job
    if job.state != Job.State.SUCCEEDED:
        raise _failure(job)
    image = Image.objects.filter(job=job, role=Image.Role.OUTPUT).order_by("index").first()
    if image is None:
        raise ToolError(f"Gemini answered without an image (job {job.id}); try rephrasing the prompt.")
    text = job.assistant_message.text if job.assistant_message else ""
    return _image_result(image, caller, full_size, headline, text)


# --- pagination ----------------------------------------------------------------------------------


def _cursor_of(created_at: dt.datetime, pk: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{pk}".encode()).decode().rstrip("=")


def _after(items: QuerySet[Any], cursor: str | None) -> QuerySet[Any]:
    """Items strictly after `cursor` in (-created_at, -id) order: immutable keys, so pages never shift."""
    if not cursor:
        return items
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, pk = text.split("|")
        created_at, after_id = dt.datetime.fromisoformat(stamp), uuid.UUID(pk)
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise ToolError("Invalid cursor: pass the next_cursor of the previous result unchanged.") from error
    return items.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=after_id))


def _page(items: QuerySet[Any], cursor: str | None, limit: int) -> tuple[list[Any], str | None]:
    rows = list(_after(items.order_by("-created_at", "-id"), cursor)[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (_cursor_of(rows[-1].created_at, rows[-1].id) if more else None)


def _json_result(data: dict[str, Any]) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(data, indent=2, ensure_ascii=False))], structured_content=data
    )


# --- tools ---------------------------------------------------------------------------------------

_MODELS_HELP = ", ".join(f"{m.id} ({m.label})" for m in MODELS.values())
_ALIASES_HELP = ", ".join(sorted(alias for alias in ALIASES if alias.startswith("nano-banana")))
_RATIOS = list(dict.fromkeys(ratio for model in MODELS.values() for ratio in model.aspect_ratios))
_RESOLUTIONS = list(dict.fromkeys(res for model in MODELS.values() for res in model.resolutions))

Prompt = Annotated[str, Field(description="What to draw, or what to change. Plain language, up to ~2000 tokens.")]
Model = Annotated[
    str | None,
    Field(
        description=f"Gemini image model: {_MODELS_HELP}; aliases such as {_ALIASES_HELP}. "
        "Default: the server's default."
    ),
]
AspectRatio = Annotated[
    str | None, Field(description=f"Aspect ratio, one of {', '.join(_RATIOS)}. Default: the model's choice (1:1).")
]
Resolution = Annotated[str | None, Field(description=f"Output size, one of {', '.join(_RESOLUTIONS)}. Default: 1K.")]
ConversationId = Annotated[str, Field(description="A conversation id from an earlier result or list_conversations.")]
ReferenceImages = Annotated[
    list[str] | None,
    Field(
        description="Reference images: http(s) URLs, data:image/...;base64 URIs, or gallery image ids "
        f"(at most {settings.MAX_REFERENCE_IMAGES}; JPEG, PNG or WEBP)."
    ),
]
FullSize = Annotated[
    bool,
    Field(description="Attach the full-size image instead of a preview (still capped at the per-result byte budget)."),
]
Limit = Annotated[int, Field(ge=1, le=100, description="How many items to return (1-100).")]
Cursor = Annotated[str | None, Field(description="next_cursor of the previous page; omit for the first page.")]

_GENERATES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True)
_READS = ToolAnnotations(read_only_hint=True, open_world_hint=False)


@server.tool(annotations=_GENERATES)
def generate_image(
    ctx: Context,
    prompt: Prompt,
    model: Model = None,
    aspect_ratio: AspectRatio = None,
    resolution: Resolution = None,
    conversation_id: Annotated[
        str | None, Field(description="Continue this conversation instead of starting a new one.")
    ] = None,
    reference_images: ReferenceImages = None,
    full_size: FullSize = False,
) -> CallToolResult:
    """Generate an image from a text prompt with Gemini (Nano Banana) through NanoClone's key pool.

    The image is saved to the user's NanoClone gallery. Returns its image id, URLs, conversation id and
    dimensions, plus the image itself (a reduced preview unless full_size is true).
    """
    caller = _current()
    with _database():
        return _generate(
            caller,
            ctx,
            full_size,
            "Generated",
            references=_references(reference_images or [], caller),
            prompt=prompt,
            model=model,
            aspect_ratio=aspect_ratio,
            resolution=resolution,
            conversation_id=_uuid(conversation_id, "conversation id") if conversation_id else None,
        )


@server.tool(annotations=_GENERATES)
def edit_image(
    ctx: Context,
    prompt: Prompt,
    image_id: Annotated[str | None, Field(description="The gallery image to edit (its image id).")] = None,
    image: Annotated[
        str | None, Field(description="Or the image to edit as an http(s) URL or a data:image/...;base64 URI.")
    ] = None,
    model: Model = None,
    aspect_ratio: AspectRatio = None,
    resolution: Resolution = None,
    conversation_id: Annotated[
        str | None, Field(description="Record the edit in this conversation (default: a new one).")
    ] = None,
    full_size: FullSize = False,
) -> CallToolResult:
    """Edit an image according to the prompt (e.g. "make the sky purple", "remove the text").

    Give exactly one of image_id (a gallery image) or image (a URL or data: URI). The edited image is
    saved to the gallery and returned like generate_image's result.
    """
    caller = _current()
    if bool(image_id) == bool(image):
        raise ToolError("Give exactly one of image_id (a gallery image id) or image (an http(s) URL or data: URI).")
    with _database():
        return _generate(
            caller,
            ctx,
            full_size,
            "Edited",
            references=([], [_uuid(image_id, "image id")]) if image_id else _references([image or ""], caller),
            prompt=prompt,
            model=model,
            aspect_ratio=aspect_ratio,
            resolution=resolution,
            conversation_id=_uuid(conversation_id, "conversation id") if conversation_id else None,
        )


@server.tool(annotations=_GENERATES)
def continue_conversation(
    ctx: Context,
    conversation_id: ConversationId,
    prompt: Prompt,
    reference_images: ReferenceImages = None,
    model: Annotated[
        str | None, Field(description="Gemini image model (default: the one the conversation used).")
    ] = None,
    aspect_ratio: AspectRatio = None,
    resolution: Resolution = None,
    full_size: FullSize = False,
) -> CallToolResult:
    """Add a turn to a conversation: Gemini sees the earlier prompts and images, so this refines the last image.

    Returns the new image like generate_image's result.
    """
    caller = _current()
    conversation = _uuid(conversation_id, "conversation id")
    with _database():
        if model is None:
            model = (
                Job.objects.filter(conversation_id=conversation, user=caller.user)
                .order_by("-created_at")
                .values_list("model", flat=True)
                .first()
            )
        return _generate(
            caller,
            ctx,
            full_size,
            "Generated",
            references=_references(reference_images or [], caller),
            prompt=prompt,
            model=model,
            aspect_ratio=aspect_ratio,
            resolution=resolution,
            conversation_id=conversation,
        )


@server.tool(annotations=_READS)
def list_conversations(limit: Limit = 20, cursor: Cursor = None) -> CallToolResult:
    """List the user's conversations, newest first, with their image counts and latest image id.

    Pages with next_cursor: pass it back as cursor for the next page (null on the last page).
    """
    caller = _current()
    with _database():
        latest = Image.objects.filter(conversation=OuterRef("pk"), role=Image.Role.OUTPUT).order_by("-created_at")
        conversations = Conversation.objects.filter(user=caller.user).annotate(
            image_count=Count("images", filter=Q(images__role=Image.Role.OUTPUT), distinct=True),
            latest_image_id=Subquery(latest.values("id")[:1]),
        )
        rows, next_cursor = _page(conversations, cursor, limit)
        return _json_result(
            {
                "conversations": [
                    {
                        "conversation_id": str(row.id),
                        "title": row.title,
                        "image_count": row.image_count,
                        "latest_image_id": str(row.latest_image_id) if row.latest_image_id else None,
                        "created_at": _timestamp(row.created_at),
                        "updated_at": _timestamp(row.updated_at),
                    }
                    for row in rows
                ],
                "next_cursor": next_cursor,
            }
        )


@server.tool(annotations=_READS)
def list_images(
    conversation_id: Annotated[str | None, Field(description="Only images of this conversation.")] = None,
    query: Annotated[str | None, Field(description="Only images whose prompt contains this text.")] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> CallToolResult:
    """List generated images in the user's gallery, newest first (metadata only; get_image shows one).

    Pages with next_cursor: pass it back as cursor for the next page (null on the last page).
    """
    caller = _current()
    with _database():
        images = Image.objects.filter(user=caller.user, role=Image.Role.OUTPUT)
        if conversation_id:
            images = images.filter(conversation_id=_uuid(conversation_id, "conversation id"))
        if query and query.strip():
            images = images.filter(prompt__icontains=query.strip())
        rows, next_cursor = _page(images, cursor, limit)
        found = []
        for row in rows:
            info = describe_image(row, caller)
            found.append({key: info[key] for key in info if key not in ("share_url", "share_url_expires", "role")})
        return _json_result({"images": found, "next_cursor": next_cursor})


@server.tool(annotations=_READS)
def get_image(
    image_id: Annotated[str, Field(description="A gallery image id.")],
    full_size: FullSize = False,
) -> CallToolResult:
    """Show one gallery image: its details and the image itself (a reduced preview unless full_size is true)."""
    caller = _current()
    with _database():
        image = Image.objects.filter(pk=_uuid(image_id, "image id"), user=caller.user).first()
        if image is None:
            raise ToolError(f"No image '{image_id}' in your gallery; list_images shows the ids.")
        return _image_result(image, caller, full_size, "Gallery")


@server.tool(annotations=_READS)
def key_pool_status() -> CallToolResult:
    """The Gemini key pool (staff only): usable keys, today's use against each key's daily limit, cooldowns.

    Keys are shown masked; secrets never leave the server.
    """
    caller = _current()
    if not caller.user.is_staff:
        raise ToolError("key_pool_status is for staff users; ask a NanoClone administrator.")
    with _database():
        keys = list(ApiKey.objects.all())
        usable = set(pool.usable_keys().values_list("pk", flat=True))
        status: dict[str, Any] = {
            "usable_keys": len(usable),
            "total_keys": len(keys),
            "quota_day": quota_day().isoformat(),
            "quota_resets_at": _timestamp(pool.next_quota_day_start()),
            "used_today": sum(key.used_today for key in keys),
            "usable_capacity_today": sum(max(0, key.daily_limit - key.used_today) for key in keys if key.pk in usable),
            "keys": [
                {
                    "label": key.label,
                    "key": key.masked,
                    "status": key.status,
                    "status_text": key.status_text,
                    "used_today": key.used_today,
                    "daily_limit": key.daily_limit,
                    "cooling_down_until": _timestamp(key.exhausted_until)
                    if key.status == ApiKey.Status.EXHAUSTED
                    else None,
                    "last_used_at": _timestamp(key.last_used_at),
                    "last_error": key.last_error[:300],
                }
                for key in keys
            ],
        }
        if not usable:
            status["why_no_usable_key"] = pool.explain_no_usable_key().message
        return _json_result(status)


# --- transports ----------------------------------------------------------------------------------


def run_stdio(user: Any) -> None:
    """Serve the tools on stdin/stdout as `user` until the client disconnects."""
    with acting_as(Caller(user, base_url=settings.PUBLIC_URL, local=True)):
        server.run("stdio")


def transport_security() -> TransportSecuritySettings:
    """DNS-rebinding protection from the hosts Django serves (NANOCLONE_ALLOWED_HOSTS).

    A page on another origin must not drive /mcp through a browser on the user's machine.
    The SDK matches exact names, so Django's ".example.com" only allows example.com itself here;
    "*" turns the check off, as it does for Django.
    """
    if "*" in settings.ALLOWED_HOSTS:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    hosts: list[str] = []
    origins: list[str] = list(settings.CSRF_TRUSTED_ORIGINS)
    for entry in settings.ALLOWED_HOSTS:
        host = entry.lstrip(".")
        hosts += [host, f"{host}:*"]
        origins += [f"{scheme}://{host}{port}" for scheme in ("http", "https") for port in ("", ":*")]
    if settings.PUBLIC_URL:
        public = urlsplit(settings.PUBLIC_URL)
        hosts.append(public.netloc)
        origins.append(f"{public.scheme}://{public.netloc}")
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=list(dict.fromkeys(hosts)),
        allowed_origins=list(dict.fromkeys(origins)),
    )


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def _token(scope: dict[str, Any]) -> str:
    parts = _header(scope, b"authorization").split()
    if len(parts) == 2 and parts[0].lower().encode() in KEYWORDS:
        return parts[1]
    return ""


def _user_for_token(token: str) -> Any | None:
    with _database():
        return user_for_token(token)


async def _json_response(send: Any, status: int, code: str, message: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"success": False, "data": None, "error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


class HttpTransport:
    """Streamable HTTP for nanoclone.asgi: the REST API's token check in front of the SDK's session manager."""

    def __init__(self, mcp: MCPServer = server) -> None:
        self._mcp = mcp
        self._manager: StreamableHTTPSessionManager | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the session manager for the app's lifespan (the ASGI dispatcher enters this at startup)."""
        # A session manager runs only once, so each lifespan gets a new one (tests start the app repeatedly).
        self._mcp.streamable_http_app(
            streamable_http_path=MCP_PATH,
            transport_security=transport_security(),
            # Reference images travel inside the JSON body as data: URIs: allow what the REST API allows.
            max_request_body_size=settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
            # Several web processes don't share sessions: then every request stands alone.
            stateless_http=settings.WEB_WORKERS > 1,
        )
        manager = self._mcp.session_manager
        async with manager.run():
            self._manager = manager
            try:
                yield
            finally:
                self._manager = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        manager = self._manager
        if manager is None:
            await _json_response(send, 503, "unavailable", "The MCP endpoint starts with the ASGI lifespan.", [])
            return
        token = _token(scope)
        user = await sync_to_async(_user_for_token, thread_sensitive=False)(token) if token else None
        if user is None:
            message = "Invalid API token." if token else "Authentication required: send Authorization: Bearer <token>."
            await _json_response(send, 401, "not_authenticated", message, [(b"www-authenticate", b"Bearer")])
            return
        # The session manager ties each MCP session to the principal that opened it, so another
        # user's token can't take over a session id.
        principal = AccessToken(token=token, client_id=f"nanoclone-user-{user.pk}", scopes=[], subject=str(user.pk))
        scope = {**scope, "user": AuthenticatedUser(principal)}
        base_url = f"{scope.get('scheme', 'http')}://{_header(scope, b'host')}" if _header(scope, b"host") else ""
        with acting_as(Caller(user, base_url=base_url)):
            await manager.handle_request(scope, receive, send)


http_transport = HttpTransport()


def is_mcp_path(path: str) -> bool:
    return path in (MCP_PATH, MCP_PATH + "/")
