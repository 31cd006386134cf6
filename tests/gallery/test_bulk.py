"""Several images at once: the ZIP is streamed while it is written, only the user's own images count, and
deleting them removes their files once the deletion commits (but never a file another image uses)."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest
from django.db import transaction

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


def test_deleting_several_removes_their_files_after_the_commit_but_keeps_a_file_still_used(
    user: Any, django_capture_on_commit_callbacks: Any
) -> None:
    twin, kept = stored(user, "twin"), stored(user, "kept")
    assert twin.file == kept.file  # the same bytes are one file
    other = storage.store(png_bytes(colour=(30, 30, 200)))
    gone = Image.objects.create(**other.fields, user=user, role=Image.Role.OUTPUT, prompt="gone")
    with django_capture_on_commit_callbacks(execute=True):
        assert bulk.delete(bulk.selected(user, [str(gone.pk), str(twin.pk)])) == 2
        assert storage.exists(gone.file)  # not before the commit
    assert not storage.exists(gone.file)
    assert storage.exists(kept.file)
    assert list(Image.objects.all()) == [kept]


def test_a_deletion_that_rolls_back_keeps_the_files(user: Any, django_capture_on_commit_callbacks: Any) -> None:
    image = stored(user, "stays")
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        Image.objects.filter(pk=image.pk).delete_with_files()
        transaction.set_rollback(True)
    assert Image.objects.filter(pk=image.pk).exists() and storage.exists(image.file)
