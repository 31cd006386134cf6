"""Image files on disk: content-addressed by sha256, verified by decoding, with thumbnails."""

from __future__ import annotations

import hashlib
import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import PIL.Image
from django.conf import settings

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


def write_once(relative: str, data: bytes) -> None:
    path = Path(settings.MEDIA_ROOT) / relative
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a reader never sees half a file and two writers can't collide.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    temporary.replace(path)


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


def ensure_thumbnail(file: str, thumbnail: str) -> Path:
    """The thumbnail's path, made on first use: thumbnails stay off the generation path."""
    path = path_of(thumbnail)
    if not path.exists():
        write_once(thumbnail, _thumbnail(read(file)))
    return path


def store(data: bytes, info: ImageInfo | None = None) -> StoredImage:
    info = info or inspect(data, max_bytes=max(settings.MAX_IMAGE_BYTES, len(data)), decode=False)
    digest = hashlib.sha256(data).hexdigest()
    extension = {"image/jpeg": "jpg"}.get(info.mime_type, info.format.lower())
    file = f"images/{digest[:2]}/{digest}.{extension}"
    thumbnail = f"thumbnails/{digest[:2]}/{digest}.webp"
    write_once(file, data)
    return StoredImage(info, digest, file, thumbnail, len(data))


def read(relative: str) -> bytes:
    return (Path(settings.MEDIA_ROOT) / relative).read_bytes()


def path_of(relative: str) -> Path:
    return Path(settings.MEDIA_ROOT) / relative


def display_of(file: str) -> str:
    """Where a file's display rendition goes (gallery.renditions.ensure_display makes it)."""
    return f"display/{file.removeprefix('images/').rsplit('.', 1)[0]}.webp"


def delete(file: str, thumbnail: str) -> None:
    """Remove a file, its thumbnail and its display rendition (Image.delete_unreferenced_files decides when)."""
    for relative in (file, thumbnail, display_of(file)):
        path_of(relative).unlink(missing_ok=True)
