"""Several images at once: the ZIP is streamed while it is written, and only the user's own images count."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest

from gallery import bulk, storage
from gallery.models import Image
from tests.conftest import png_bytes

pytestmark = pytest.mark.django_db


def stored(user: Any, prompt: str, size: tuple[int, int] = (600, 400)) -> Image:
    kept = storage.store(png_bytes(size))
    return Image.objects.create(**kept.fields, user=user, role=Image.Role.OUTPUT, prompt=prompt)


def test_the_zip_comes_in_pieces_and_holds_every_original(user: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(bulk, "CHUNK", 4096)
    images = [stored(user, f"picture {n}", (300 + n, 200)) for n in range(3)]
    pieces = [piece for piece in bulk.zip_stream(images) if piece]
    whole = b"".join(pieces)
    assert len(pieces) > 3 and max(len(piece) for piece in pieces) < len(whole) / 2  # never all at once
    archive = zipfile.ZipFile(io.BytesIO(whole))
    assert archive.testzip() is None
    assert sorted(archive.read(name) for name in archive.namelist()) == sorted(storage.read(i.file) for i in images)
    assert all(name.startswith("picture-") and name.endswith(".png") for name in archive.namelist())


def test_a_selection_holds_only_the_users_own_images(user: Any, other_user: Any) -> None:
    mine, theirs = stored(user, "mine"), stored(other_user, "theirs")
    found = bulk.selected(user, [str(mine.pk), str(theirs.pk), "not-an-id"])
    assert list(found) == [mine]
