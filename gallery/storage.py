"""Image files in the media store (Django's storage API: the local disk, or an S3-compatible bucket):
content-addressed by sha256, verified by decoding, with thumbnails."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import PIL.Image
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.files.base import ContentFile, File
from django.core.files.storage import FileSystemStorage, Storage, storages

log = logging.getLogger(__name__)

FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "MPO": "image/jpeg", "WEBP": "image/webp"}
FORMAT_NAMES = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG", "WEBP": "WEBP"}  # MPO: multi-picture JPEG


class InvalidImage(ValueError):
    pass


@dataclass(frozen=True)
class ImageInfo:
    mime_type: str
    format: str
    width: int
    height: int

    @classmethod
    def of(cls, mime_type: str, width: int, height: int) -> ImageInfo:
        """What an image already checked elsewhere is (Gemini's answers: keys.gemini.answers)."""
        return cls(
            mime_type, {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}[mime_type], width, height
        )


@dataclass(frozen=True)
class StoredImage:
    info: ImageInfo
    sha256: str
    file: str
    thumbnail: str
    bytes: int

    @property
    def fields(self) -> dict[str, object]:
        """The gallery.Image fields that describe this file."""
        return {
            "file": self.file,
            "thumbnail": self.thumbnail,
            "sha256": self.sha256,
            "mime_type": self.info.mime_type,
            "width": self.info.width,
            "height": self.info.height,
            "bytes": self.bytes,
        }


def inspect(data: bytes, *, max_bytes: int | None = None, decode: bool = True) -> ImageInfo:
    """What the bytes are, by decoding them: complete JPEG, PNG or WEBP only, within the limits.

    The one image check for uploads, data: URIs and fetched URLs. `decode=False` skips the
    full pixel decode (for Gemini's own output, already trusted to be whole).
    """
    limit = max_bytes or settings.MAX_IMAGE_BYTES
    if not data:
        raise InvalidImage("The image is empty.")
    if len(data) > limit:
        raise InvalidImage(f"The image is larger than the {limit / 2**20:g} MB limit ({len(data) / 2**20:.1f} MB).")
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            fmt, width, height = image.format, image.width, image.height
            if fmt not in FORMATS:
                raise InvalidImage(f"Unsupported image format {fmt}; send a JPEG, PNG or WEBP file.")
            # Checked here rather than by changing PIL's process-wide limit, which other code
            # (thumbnails, an in-process emulator) shares; gallery.apps sets that once.
            if width * height > settings.MAX_IMAGE_PIXELS:
                raise InvalidImage(
                    f"The image has too many pixels ({width}x{height}); the limit is {settings.MAX_IMAGE_PIXELS:,}."
                )
            image.verify()
        if decode:
            # verify() checks PNG chunks only and does nothing for JPEG/WEBP: a full load
            # catches truncated or corrupt images before they reach Gemini.
            with PIL.Image.open(io.BytesIO(data)) as image:
                image.load()
    except InvalidImage:
        raise
    except PIL.UnidentifiedImageError as error:
        raise InvalidImage("The data could not be decoded: it is not a JPEG, PNG or WEBP image.") from error
    except (PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning) as error:
        raise InvalidImage(f"The image has too many pixels: {error}") from error
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error) as error:
        raise InvalidImage(
            "The image could not be decoded (corrupt or truncated); send a complete JPEG, PNG or WEBP file."
        ) from error
    return ImageInfo(FORMATS[fmt or ""], FORMAT_NAMES[fmt or ""], width, height)


# --- the store: Django's storage API, local disk or an S3-compatible bucket (settings.STORAGES) --------


class StoreUnavailable(Exception):
    """The media store can't be reached or written now (a bucket's service down, a full disk): every
    door answers 503 with Retry-After, never a 500."""

    message = "The image store is out of reach; try again in a few seconds."


class MissingFile(FileNotFoundError):
    """A stored file is gone: the doors answer 404."""


def media() -> Storage:
    return storages["default"]


@contextmanager
def _reaching(name: str) -> Iterator[None]:
    """What the store's errors mean: a missing file, or the store out of reach for now."""
    try:
        yield
    except FileNotFoundError as missing:
        raise MissingFile(f"The file {name} is missing from the store.") from missing
    except (BotoCoreError, ClientError) as error:
        if isinstance(error, ClientError) and error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
            raise MissingFile(f"The file {name} is missing from the store.") from error
        log.warning("The media store is out of reach: %s", error)
        raise StoreUnavailable(str(error)) from error
    except OSError as error:  # the local disk: full, read-only, permissions
        log.warning("The media store can't be used: %s", error)
        raise StoreUnavailable(str(error)) from error


class LocalMedia(FileSystemStorage):
    """Files on the local disk (NANOCLONE_MEDIA_STORE=local), content-addressed: a name holds the same
    bytes whoever writes it, so a file is written once, whole (a temporary file renamed into place)."""

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        return name  # the same name is the same bytes: never a renamed copy

    def _save(self, name: str, content: Any) -> str:
        path = Path(self.path(name))
        if path.exists():
            return name
        path.parent.mkdir(parents=True, exist_ok=True)
        # A temporary name of its own: two threads or processes storing the same file don't collide.
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as out:
                for chunk in content.chunks():
                    out.write(chunk)
            Path(temporary).chmod(0o644)
            Path(temporary).replace(path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return name


def write_once(name: str, data: bytes) -> None:
    with _reaching(name):
        media().save(name, ContentFile(data))


def read(name: str) -> bytes:
    """A stored file's bytes. Raises MissingFile, StoreUnavailable."""
    with _reaching(name), media().open(name, "rb") as file:
        return bytes(file.read())


def open_file(name: str) -> File:
    """A stored file, open to read in pieces (a bucket's object spools to a temporary file past 1 MiB,
    never held whole in memory); the caller closes it. Raises MissingFile, StoreUnavailable."""
    with _reaching(name):
        file = media().open(name, "rb")
        file.size  # noqa: B018  # a missing file says so here, not in the middle of a response
        return file


def exists(name: str) -> bool:
    with _reaching(name):
        return bool(media().exists(name))


def presigned_url(name: str, download_as: str = "") -> str | None:
    """A short-lived URL the store itself serves the file at (NANOCLONE_MEDIA_REDIRECT), or None when
    the store has none (the local disk): NanoClone then streams the file itself."""
    if not settings.MEDIA_REDIRECT or settings.MEDIA_STORE != "s3":
        return None
    parameters = {"ResponseContentDisposition": f'attachment; filename="{download_as}"'} if download_as else None
    with _reaching(name):
        return str(media().url(name, parameters=parameters, expire=settings.MEDIA_URL_SECONDS))  # type: ignore[call-arg]  # S3Storage.url


def local_path(name: str) -> Path | None:
    """Where a file is on this machine's disk, when the store is the local disk."""
    store = media()
    return Path(store.path(name)) if isinstance(store, FileSystemStorage) else None


def check() -> str:
    """For /health: "ok" when the store answers, else why not."""
    try:
        with _reaching("images/"):
            media().exists("images/.health")
    except StoreUnavailable as error:
        return f"unreachable: {error}"[:300]
    return "ok"


def _thumbnail(data: bytes) -> bytes:
    with PIL.Image.open(io.BytesIO(data)) as image:
        box = settings.THUMBNAIL_SIZE
        # reduce() by an integer factor first: far cheaper than resampling the full image.
        factor = max(1, min(image.width, image.height) // (2 * box))
        small = image.reduce(factor) if factor > 1 else image
        small.thumbnail((box, box))
        out = io.BytesIO()
        small.convert("RGB").save(out, "WEBP", quality=80, method=0)
        return out.getvalue()


def ensure_thumbnail(file: str, thumbnail: str) -> None:
    """Make the thumbnail on its first use: thumbnails stay off the generation path. Raises
    MissingFile, StoreUnavailable."""
    if not exists(thumbnail):
        write_once(thumbnail, _thumbnail(read(file)))


def store(data: bytes, info: ImageInfo | None = None) -> StoredImage:
    info = info or inspect(data, max_bytes=max(settings.MAX_IMAGE_BYTES, len(data)), decode=False)
    digest = hashlib.sha256(data).hexdigest()
    extension = {"image/jpeg": "jpg"}.get(info.mime_type, info.format.lower())
    file = f"images/{digest[:2]}/{digest}.{extension}"
    thumbnail = f"thumbnails/{digest[:2]}/{digest}.webp"
    write_once(file, data)
    return StoredImage(info, digest, file, thumbnail, len(data))


def display_of(file: str) -> str:
    """Where a file's display rendition goes (gallery.renditions.ensure_display makes it)."""
    return f"display/{file.removeprefix('images/').rsplit('.', 1)[0]}.webp"


def delete(file: str, thumbnail: str) -> None:
    """Remove a file, its thumbnail and its display rendition (Image.delete_unreferenced_files decides when)."""
    for name in (file, thumbnail, display_of(file)):
        with _reaching(name):
            media().delete(name)
