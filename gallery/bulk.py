"""What the gallery does to several images at once: a zip streamed as it is written, favourites,
deletion and boards."""

from __future__ import annotations

import re
import uuid
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import closing

from django.contrib.auth.models import User
from django.db.models import QuerySet

from gallery import storage
from gallery.models import Board, Image, ImageQuerySet

MAX_SELECTED = 1000
CHUNK = 256 * 1024


def selected(user: User, ids: Iterable[str]) -> ImageQuerySet:
    """The user's generated images among `ids` (others' images and ids that don't parse are ignored)."""
    valid = []
    for value in list(ids)[:MAX_SELECTED]:
        try:
            valid.append(uuid.UUID(value))
        except ValueError:
            continue
    return Image.objects.filter(user=user, role=Image.Role.OUTPUT, pk__in=valid).order_by("-created_at", "-id")


class _Pipe:
    """A write-only file for zipfile whose bytes the generator hands on as they come (no seeking:
    zipfile then writes data descriptors, and the archive is never whole in memory)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.written = 0

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        self.written += len(data)
        return len(data)

    def tell(self) -> int:
        return self.written

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.chunks = b"".join(self.chunks), []
        return data


def _name(image: Image, taken: set[str]) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", image.prompt.lower()).strip("-")[:60] or "image"
    name = f"{words}-{str(image.pk)[:8]}.{image.extension}"
    while name in taken:
        name = f"{words}-{uuid.uuid4().hex[:8]}.{image.extension}"
    taken.add(name)
    return name


def zip_stream(images: Iterable[Image]) -> Iterator[bytes]:
    """A ZIP of the images' original files, yielded in pieces of about CHUNK bytes while it is
    written (stored, not deflated: PNG, JPEG and WEBP are compressed already)."""
    pipe = _Pipe()
    taken: set[str] = set()
    with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_STORED) as archive:  # type: ignore[call-overload]
        missing = []
        for image in images:
            try:
                source = storage.open_file(image.file)
            except storage.MissingFile:
                missing.append(image)  # said in the archive, not a broken download
                continue
            with closing(source), archive.open(_name(image, taken), "w") as target:
                while data := source.read(CHUNK):
                    target.write(data)
                    yield pipe.take()
            yield pipe.take()
        if missing:
            lines = [f"{image.pk}  {image.prompt[:80]}" for image in missing]
            archive.writestr(
                "MISSING.txt", "These images' files are missing from the store:\n" + "\n".join(lines) + "\n"
            )
    yield pipe.take()


def set_favorite(images: QuerySet[Image], favorite: bool) -> int:
    return images.update(favorite=favorite)


def delete(images: ImageQuerySet) -> int:
    """Delete the images at once; their files go after the commit, where no other image uses them."""
    return images.delete_with_files()


def board_named(user: User, name: str) -> Board:
    """The user's board of that name, made if it doesn't exist yet."""
    board, _ = Board.objects.get_or_create(user=user, name=" ".join(name.split())[:100])
    return board


def add_to_board(board: Board, images: QuerySet[Image]) -> None:
    board.images.add(*images)


def remove_from_board(board: Board, images: QuerySet[Image]) -> None:
    board.images.remove(*images)
