"""NanoClone as an MCP server: AI agents generate and edit images through the key pool and the gallery.

One MCPServer (the official `mcp` SDK) with the tools below; nanoclone.mcp.transport serves it on
stdio (`python manage.py mcp`, acting as NANOCLONE_MCP_USER, default the first superuser) and as
streamable HTTP at /mcp on `serve`, where every request carries one of the REST API's tokens
(`Authorization: Bearer <token>`) and acts as its user.

Tools are plain functions: the SDK runs them on worker threads, where the ORM and the pipeline may
block as they do in a view. A tool never generates by itself: it builds a pipeline.GenerationRequest
and maps the finished job back. Failures an agent can act on (no usable key, blocked prompt, bad
input) are raised as ToolError, which the SDK returns as an `isError` result with the message.

At the batch price (`batch_price`), a generating tool answers at once with the job's id: the
cluster packs the job into a Gemini batch, and the agent follows it with get_job (the finished job's
image comes back as the generating tool's would) or drops it with cancel_job. The SDK has the wire
types of MCP's tasks but serves no tasks/* method, so following a job is a tool of its own.
"""

import base64
import datetime as dt
import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
import anyio.from_thread
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import OperationalError, connections
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ContentBlock, ImageContent, TextContent, ToolAnnotations
from pydantic import Field

from conversations import pipeline
from conversations.models import Conversation, Job
from gallery import browse, renditions, storage
from gallery.models import Image
from keys import pool
from keys.catalogue import ALIASES, MODELS, default_model
from keys.models import ApiKey, quota_day
from nanoclone import databases
from nanoclone.api.envelope import timestamp

log = logging.getLogger(__name__)

# Long side of the preview an image result carries unless the agent asks for full size.
PREVIEW_SIZE = 768
# What the batch price (`batch_price`) means for the agent.
BATCH_PRICE_NOTE = "half price, ready within 24 hours, usually much sooner"

server: MCPServer = MCPServer(
    "nanoclone",
    title="NanoClone",
    instructions=(
        "Generate and edit images with Google's Gemini image models (Nano Banana) through NanoClone's key "
        "pool. Every image lands in the user's NanoClone gallery. To refine an image, call "
        "continue_conversation with the conversation_id of the result (Gemini sees the whole thread), or "
        "edit_image with its image_id. Image results carry a reduced preview; pass full_size=true for more. "
        f"With batch_price=true ({BATCH_PRICE_NOTE}) a generating tool answers at once with a job_id: "
        "call get_job with it later for the image."
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
def database() -> Iterator[None]:
    # Tool threads are the SDK's, not Django's request cycle: close what this thread opened,
    # as Django does at the end of a request, so no connection outlives the call. A database busy
    # or out of reach is worth a retry, as the other doors' 503 says; any other error is a bug.
    try:
        yield
    except (OperationalError, storage.StoreUnavailable) as error:
        if (message := databases.outage(error)) is None:
            raise
        raise ToolError(f"{message} (retry in {databases.RETRY_AFTER_SECONDS} s)") from error
    finally:
        connections.close_all()


# --- input ---------------------------------------------------------------------------------------


def _uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(str(value).strip()))
    except ValueError as error:
        raise ToolError(f"'{value}' is not a valid {what} (expected an id like {uuid.UUID(int=0)}).") from error


# --- image output --------------------------------------------------------------------------------


def rendition(image: Image, full_size: bool = False) -> renditions.Rendition:
    """The image within NANOCLONE_MCP_MAX_IMAGE_BYTES: a preview, or the original when asked and it fits."""
    try:
        return renditions.rendition(image, settings.MCP_MAX_IMAGE_BYTES, PREVIEW_SIZE, full_size)
    except FileNotFoundError as error:
        raise ToolError(f"The file of image {image.id} is missing on the server; it can't be shown.") from error


def _absolute(caller: Caller, path: str) -> str:
    base = settings.PUBLIC_URL or caller.base_url
    return f"{base}{path}" if base else path


def describe_image(image: Image, caller: Caller) -> dict[str, Any]:
    info: dict[str, Any] = {
        "image_id": str(image.id),
        "conversation_id": str(image.conversation_id) if image.conversation_id else None,
        "url": _absolute(caller, image.get_absolute_url()),
        "share_url": _absolute(caller, image.signed_url()),
        "share_url_expires": timestamp(timezone.now() + dt.timedelta(seconds=settings.SIGNED_URL_MAX_AGE)),
        "width": image.width,
        "height": image.height,
        "mime_type": image.mime_type,
        "bytes": image.bytes,
        "prompt": image.prompt,
        "model": image.model,
        "role": image.role,
        "created_at": timestamp(image.created_at),
    }
    if caller.local and (path := storage.local_path(image.file)):
        info["path"] = str(path)
    return info


def _image_result(
    image: Image,
    caller: Caller,
    full_size: bool,
    headline: str,
    model_text: str = "",
    grounding: dict[str, Any] | None = None,
    job: Job | None = None,
) -> CallToolResult:
    info = describe_image(image, caller)
    if job is not None:
        info["job_id"] = str(job.id)
    if grounding:
        info["grounding"] = grounding
    sent = rendition(image, full_size)
    info["attached"] = {"mime_type": sent.mime_type, "width": sent.width, "height": sent.height, "note": sent.note}
    lines = [
        f"{headline}: image {info['image_id']} ({image.width}x{image.height} {image.format}, "
        f"{renditions.megabytes(image.bytes)}) in conversation {info['conversation_id']}.",
        f"URL: {info['url']} (needs your NanoClone login or API token)",
        f"Share URL (no login needed until {info['share_url_expires']}): {info['share_url']}",
    ]
    if info.get("path"):
        lines.append(f"File on this machine: {info['path']}")
    lines.append(f"Attached: {sent.note}.")
    if model_text.strip():
        lines.append(f"Gemini said: {model_text.strip()}")
    for source in (grounding or {}).get("sources", []):
        lines.append(f"Source: {source['title']} <{source['uri']}>")
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
        message += f" A key frees up at {timestamp(job.retry_after)}; try again then."
    return ToolError(f"{message} (error: {job.error_code or 'failed'}; conversation {job.conversation_id})")


def _finished(job: Job, caller: Caller, full_size: bool, headline: str) -> CallToolResult:
    """A finished job's answer: its image (generate_image's result), or its failure as a tool error."""
    if job.state != Job.State.SUCCEEDED:
        raise _failure(job)
    image = next(iter(pipeline.output_images(job)), None)
    if image is None:
        raise ToolError(f"Gemini answered without an image (job {job.id}); try rephrasing the prompt.")
    answer = job.assistant_message
    text, grounding = (answer.text, answer.grounding) if answer else ("", None)
    return _image_result(image, caller, full_size, headline, text, grounding, job)


def describe_job(job: Job) -> dict[str, Any]:
    return {
        "job_id": str(job.id),
        "state": job.state,
        "phase": job.phase,
        "progress": job.progress,
        "batch_price": job.priority == Job.Priority.BATCH,
        "conversation_id": str(job.conversation_id),
        "model": job.model,
        "prompt": job.prompt,
        "created_at": timestamp(job.created_at),
    }


def _unfinished(job: Job, headline: str) -> CallToolResult:
    """A job still on its way: its state and how to follow it."""
    info = describe_job(job)
    where = "waits in a Gemini batch" if job.phase == Job.Phase.BATCHED else f"is {job.state} ({job.phase})"
    price = f" at the batch price ({BATCH_PRICE_NOTE})" if info["batch_price"] else ""
    lines = [
        f"{headline}: job {job.id}{price} {where}, in conversation {job.conversation_id}.",
        f"Call get_job(job_id='{job.id}') later: once it finishes, it returns the image as generate_image does.",
        f"cancel_job(job_id='{job.id}') cancels it.",
    ]
    return CallToolResult(content=[TextContent(type="text", text="\n".join(lines))], structured_content=info)


def _job_result(job: Job, caller: Caller, full_size: bool, headline: str, waiting: str) -> CallToolResult:
    return _finished(job, caller, full_size, headline) if job.finished else _unfinished(job, waiting)


def _generate(
    caller: Caller, ctx: Context, full_size: bool, headline: str, batch_price: bool = False, **fields: Any
) -> CallToolResult:
    """Run one generation through the pipeline and answer with its image (or a tool error); at the
    batch price, queue it and answer at once with the job to follow."""

    def relay(job: Job) -> None:
        # Progress keeps a long generation from looking hung (clients that reset their timeout on
        # progress keep waiting); the SDK sends nothing unless the call carried a progress token.
        anyio.from_thread.run(ctx.report_progress, job.progress, 100, f"{job.phase} ({job.model})")

    request = pipeline.GenerationRequest(
        user=caller.user,
        source="mcp",
        references_field="reference_images",
        base_url=caller.base_url,
        priority=Job.Priority.BATCH if batch_price else None,
        **fields,
    )
    try:
        if batch_price:
            # The cluster packs it into a Gemini batch; a replayed idempotency key may find it finished.
            job = pipeline.start(request, pipeline.RunMode.QUEUE)
            return _job_result(job, caller, full_size, headline, "Queued")
        job = pipeline.start(request, pipeline.RunMode.INLINE, on_progress=relay)
    except pipeline.InvalidRequest as error:
        raise ToolError(error.message) from error
    except pool.NoUsableKey as error:  # QUEUE refuses at once, recording nothing
        retry = f" A key frees up at {timestamp(error.retry_after)}; try again then." if error.retry_after else ""
        raise ToolError(f"{error.message}{retry} (error: no_usable_key)") from error
    return _finished(job, caller, full_size, headline)


def _own_job(caller: Caller, job_id: str) -> Job:
    job = (
        Job.objects.select_related("user_message", "assistant_message")
        .filter(pk=_uuid(job_id, "job id"), user=caller.user)
        .first()
    )
    if job is None:
        raise ToolError(f"No job '{job_id}' of yours; the job_id of a batch-priced generate_image result names one.")
    return job


def _page(items: QuerySet[Any], cursor: str | None, limit: int) -> tuple[list[Any], str | None]:
    position = browse.decode_cursor(cursor) if cursor else None
    if cursor and position is None:
        raise ToolError("Invalid cursor: pass the next_cursor of the previous result unchanged.")
    page = browse.keyset_page(items, position, limit)
    return page.items, page.next_cursor or None


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
ThinkingLevel = Annotated[
    str | None,
    Field(description="How hard the model thinks first: minimal, medium or high, where the model offers it."),
]
Grounding = Annotated[
    bool, Field(description="Ground the image in Google Search results (models that offer it); sources are returned.")
]
IdempotencyKey = Annotated[
    str | None,
    Field(
        description="Any unique string for this request: calling again with the same key (after a timeout, "
        "say) returns the first call's image instead of generating and paying for a second one."
    ),
]
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
BatchPrice = Annotated[
    bool,
    Field(
        description=f"Batch price: {BATCH_PRICE_NOTE}. The call answers at once with a job_id instead of the "
        "image; follow it with get_job (cancel_job cancels it)."
    ),
]
JobId = Annotated[
    str, Field(description="The job_id of a batch-priced generate_image, edit_image or continue_conversation result.")
]
Limit = Annotated[int, Field(ge=1, le=100, description="How many items to return (1-100).")]
Cursor = Annotated[str | None, Field(description="next_cursor of the previous page; omit for the first page.")]

_GENERATES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True)
_READS = ToolAnnotations(read_only_hint=True, open_world_hint=False)
# Cancelling a job in a Gemini batch may cancel the batch at Google.
_CANCELS = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=True)


@server.tool(annotations=_GENERATES)
def generate_image(
    ctx: Context,
    prompt: Prompt,
    model: Model = None,
    aspect_ratio: AspectRatio = None,
    resolution: Resolution = None,
    thinking_level: ThinkingLevel = None,
    grounding: Grounding = False,
    idempotency_key: IdempotencyKey = None,
    conversation_id: Annotated[
        str | None, Field(description="Continue this conversation instead of starting a new one.")
    ] = None,
    reference_images: ReferenceImages = None,
    full_size: FullSize = False,
    batch_price: BatchPrice = False,
) -> CallToolResult:
    """Generate an image from a text prompt with Gemini (Nano Banana) through NanoClone's key pool.

    The image is saved to the user's NanoClone gallery. Returns its image id, URLs, conversation id and
    dimensions, plus the image itself (a reduced preview unless full_size is true).
    """
    caller = _current()
    with database():
        return _generate(
            caller,
            ctx,
            full_size,
            "Generated",
            batch_price,
            references=reference_images or [],
            prompt=prompt,
            model=model,
            aspect_ratio=aspect_ratio,
            resolution=resolution,
            thinking_level=thinking_level,
            grounding=grounding,
            idempotency_key=(idempotency_key or "").strip()[:200],
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
    thinking_level: ThinkingLevel = None,
    grounding: Grounding = False,
    idempotency_key: IdempotencyKey = None,
    conversation_id: Annotated[
        str | None, Field(description="Record the edit in this conversation (default: a new one).")
    ] = None,
    full_size: FullSize = False,
    batch_price: BatchPrice = False,
) -> CallToolResult:
    """Edit an image according to the prompt (e.g. "make the sky purple", "remove the text").

    Give exactly one of image_id (a gallery image) or image (a URL or data: URI). The edited image is
    saved to the gallery and returned like generate_image's result.
    """
    caller = _current()
    if bool(image_id) == bool(image):
        raise ToolError("Give exactly one of image_id (a gallery image id) or image (an http(s) URL or data: URI).")
    with database():
        return _generate(
            caller,
            ctx,
            full_size,
            "Edited",
            batch_price,
            references=[_uuid(image_id, "image id")] if image_id else [image or ""],
            prompt=prompt,
            model=model,
            aspect_ratio=aspect_ratio,
            resolution=resolution,
            thinking_level=thinking_level,
            grounding=grounding,
            idempotency_key=(idempotency_key or "").strip()[:200],
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
    thinking_level: ThinkingLevel = None,
    grounding: Grounding = False,
    idempotency_key: IdempotencyKey = None,
    full_size: FullSize = False,
    batch_price: BatchPrice = False,
) -> CallToolResult:
    """Add a turn to a conversation: Gemini sees the earlier prompts and images, so this refines the last image.

    Returns the new image like generate_image's result.
    """
    caller = _current()
    conversation = _uuid(conversation_id, "conversation id")
    with database():
        return _generate(
            caller,
            ctx,
            full_size,
            "Generated",
            batch_price,
            references=reference_images or [],
            prompt=prompt,
            model=model,
            aspect_ratio=aspect_ratio,
            resolution=resolution,
            thinking_level=thinking_level,
            grounding=grounding,
            idempotency_key=(idempotency_key or "").strip()[:200],
            conversation_id=conversation,
        )


@server.tool(annotations=_READS)
def list_conversations(limit: Limit = 20, cursor: Cursor = None) -> CallToolResult:
    """List the user's conversations, newest first, with their image counts and latest image id.

    Pages with next_cursor: pass it back as cursor for the next page (null on the last page).
    """
    caller = _current()
    with database():
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
                        "created_at": timestamp(row.created_at),
                        "updated_at": timestamp(row.updated_at),
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
    with database():
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
    with database():
        image = Image.objects.filter(pk=_uuid(image_id, "image id"), user=caller.user).first()
        if image is None:
            raise ToolError(f"No image '{image_id}' in your gallery; list_images shows the ids.")
        return _image_result(image, caller, full_size, "Gallery")


@server.tool(annotations=_READS)
def get_job(job_id: JobId, full_size: FullSize = False) -> CallToolResult:
    """Follow a job, such as a batch-priced generation: while it waits, its state (pending or running)
    and phase (batched: in a Gemini batch); once it succeeds, its image exactly as generate_image returns
    it (a reduced preview unless full_size is true). A failed or cancelled job is a tool error saying why.
    """
    caller = _current()
    with database():
        return _job_result(_own_job(caller, job_id), caller, full_size, "Generated", "Still waiting")


@server.tool(annotations=_CANCELS)
def cancel_job(job_id: JobId) -> CallToolResult:
    """Cancel a job that has not finished, such as a batch-priced generation still waiting for its batch.

    A job generating online at full price can't be cancelled any more; a finished one is a tool error.
    """
    caller = _current()
    with database():
        job = _own_job(caller, job_id)
        if not pipeline.cancel(job):
            job.refresh_from_db()
            if job.finished:
                raise ToolError(f"Job {job.id} has already finished ({job.state}); get_job shows it.")
            raise ToolError(f"Job {job.id} is {job.phase} and can no longer be cancelled.")
        job.refresh_from_db()
        info = describe_job(job)
        text = f"Cancelled job {job.id} (conversation {job.conversation_id}); it makes no image."
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=info)


@server.tool(annotations=_READS)
def key_pool_status() -> CallToolResult:
    """The Gemini key pool (staff only): usable keys per model, today's use against each key's daily limit,
    each model resting on a key or project (why and until when), and what each project has left today.

    Each credential shows its kind (AI Studio key, Vertex AI express key or service account), project,
    location and proxy. Keys are shown masked, proxies without their password; secrets never leave the server.
    """
    caller = _current()
    if not caller.user.is_staff:
        raise ToolError("key_pool_status is for staff users; ask a NanoClone administrator.")
    with database():
        keys = list(ApiKey.objects.all())
        # Usable for the default model; usable_keys_by_model has the others.
        usable = set(pool.usable_keys(default_model().id).values_list("pk", flat=True))
        rests = pool.rests_by_key(keys)
        status: dict[str, Any] = {
            "usable_keys": len(usable),
            "total_keys": len(keys),
            "quota_day": quota_day().isoformat(),
            "quota_resets_at": timestamp(pool.next_quota_day_start()),
            "used_today": sum(key.used_today for key in keys),
            "usable_capacity_today": sum(max(0, key.daily_limit - key.used_today) for key in keys if key.pk in usable),
            "usable_keys_by_model": {model: pool.usable_keys(model).count() for model in MODELS},
            "projects": [
                {"project": p.project or None, "keys": p.keys, "used_today": p.used_today, "left_today": p.left_today}
                for p in pool.projects(keys)
            ],
            "keys": [
                {
                    "label": key.label,
                    "key": key.masked,
                    "kind": key.kind,
                    "status": key.status,
                    "status_text": key.status_text,
                    "project": key.project or None,
                    "location": key.location or None,
                    "proxy": key.proxy_shown or None,
                    "rests": [
                        {
                            "model": rest.model,
                            "why": rest.why,
                            "until": timestamp(rest.until),
                            "on": "project" if rest.project else "key",
                        }
                        for rest in rests[key.pk]
                    ],
                    "used_today": key.used_today,
                    "daily_limit": key.daily_limit,
                    "cooling_down_until": timestamp(key.exhausted_until)
                    if key.status in (ApiKey.Status.EXHAUSTED, ApiKey.Status.UNREACHABLE)
                    else None,
                    "last_used_at": timestamp(key.last_used_at),
                    "last_error": key.last_error[:300],
                }
                for key in keys
            ],
        }
        if not usable:
            status["why_no_usable_key"] = pool.explain_no_usable_key(model=default_model().id).message
        return _json_result(status)
