"""The display rendition (/files/<id>/display): what the chat and the viewer show instead of the original."""

from __future__ import annotations

import io
from typing import Any

import PIL.Image
import pytest
from django.test import Client

from conversations import pipeline
from conversations.models import Conversation
from gallery import renditions, storage
from gallery.models import Image

pytestmark = pytest.mark.django_db


def noisy_png(size: tuple[int, int]) -> bytes:
    """A PNG that compresses like a photo (gradients and grain), not like a flat test card."""
    bands = [
        PIL.Image.effect_noise(size, 24),
        PIL.Image.linear_gradient("L").resize(size),
        PIL.Image.radial_gradient("L").resize(size),
    ]
    out = io.BytesIO()
    PIL.Image.merge("RGB", bands).save(out, "PNG", compress_level=1)
    return out.getvalue()


def stored_image(user: Any, data: bytes) -> Image:
    stored = storage.store(data)
    return Image.objects.create(
        **stored.fields, user=user, conversation=Conversation.objects.create(user=user), prompt="a 4K harbour"
    )


def body(response: Any) -> bytes:
    return b"".join(response.streaming_content)


@pytest.fixture
def browser(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


def test_it_serves_a_webp_of_1536_px_made_once_and_cached(browser: Client, user: Any) -> None:
    image = stored_image(user, noisy_png((2048, 1536)))
    response = browser.get(f"/files/{image.id}/display")
    assert response.status_code == 200 and response["Content-Type"] == "image/webp"
    data = body(response)
    shown = PIL.Image.open(io.BytesIO(data))
    assert (shown.format, shown.size) == ("WEBP", (1536, 1152))
    assert len(data) < image.bytes / 4
    assert "immutable" in response["Cache-Control"] and response["ETag"] == f'"{image.sha256}-d"'
    made = storage.local_path(storage.display_of(image.file))
    assert made is not None
    made_at = made.stat().st_mtime_ns
    assert body(browser.get(f"/files/{image.id}/display")) == data
    assert made.stat().st_mtime_ns == made_at  # made once, read after
    again = browser.get(f"/files/{image.id}/display", headers={"If-None-Match": response["ETag"]})
    assert again.status_code == 304
    # The original stays what open and download give.
    original = browser.get(image.get_absolute_url())
    assert original["Content-Type"] == "image/png" and body(original) == storage.read(image.file)


def test_a_small_image_keeps_its_size(browser: Client, user: Any) -> None:
    image = stored_image(user, noisy_png((640, 480)))
    shown = PIL.Image.open(io.BytesIO(body(browser.get(f"/files/{image.id}/display"))))
    assert shown.size == (640, 480)


def test_it_checks_access_like_the_original(client: Client, user: Any, other_user: Any) -> None:
    image = stored_image(user, noisy_png((64, 64)))
    assert client.get(f"/files/{image.id}/display").status_code == 401
    client.force_login(other_user)
    assert client.get(f"/files/{image.id}/display").status_code == 404


def test_the_rendition_goes_with_the_last_image_using_its_file(browser: Client, user: Any) -> None:
    image = stored_image(user, noisy_png((64, 64)))
    renditions.ensure_display(image.file)
    assert storage.exists(storage.display_of(image.file))
    image.delete()
    Image.delete_unreferenced_files(image.file, image.thumbnail)
    assert not storage.exists(storage.display_of(image.file)) and not storage.exists(image.file)


def test_an_image_made_through_the_api_gets_its_rendition_only_when_viewed(
    browser: Client, user: Any, add_key: Any
) -> None:
    add_key()
    job = pipeline.start(pipeline.GenerationRequest(user=user, prompt="a quiet harbour"), pipeline.RunMode.INLINE)
    image = Image.objects.get(job=job)
    display = storage.display_of(image.file)
    assert not storage.exists(display)  # no work on the API's path for a page nobody may open
    assert browser.get(f"/files/{image.id}/display").status_code == 200 and storage.exists(display)
