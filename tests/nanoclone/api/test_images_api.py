"""GET /api/images, /api/images/<id> and the image files: paginated, filtered, private, cached."""

from __future__ import annotations

import io
import uuid
from decimal import Decimal
from typing import Any

import PIL.Image
import pytest
from django.test import RequestFactory
from rest_framework import serializers
from rest_framework.test import APIClient

from conversations.models import Conversation, Message
from gallery import storage
from gallery.models import Image
from nanoclone.api.image_serializers import ImageSerializer
from tests.conftest import png_bytes

pytestmark = pytest.mark.django_db


def make_image(user: Any, conversation: Conversation | None = None, shade: int = 0) -> Image:
    """An output image stored the way the pipeline stores one."""
    stored = storage.store(png_bytes((320, 200), (shade, 90, 160)))
    return Image.objects.create(
        **stored.fields,
        user=user,
        conversation=conversation,
        prompt=f"picture {shade}",
        model="gemini-3.1-flash-image",
    )


@pytest.fixture
def image(user: Any) -> Image:
    return make_image(user, Conversation.objects.create(user=user, title="t"))


def path_of(url: str) -> str:
    return url.removeprefix("http://testserver")


def test_it_lists_images_newest_first_in_pages(api: Any, user: Any) -> None:
    made = [make_image(user, shade=shade) for shade in range(3)]
    first = api.get("/api/images?page_size=2").json()["data"]
    assert (first["count"], first["page"], first["pages"]) == (3, 1, 2)
    assert [i["id"] for i in first["results"]] == [str(made[2].id), str(made[1].id)]
    second = api.get(path_of(first["next"])).json()["data"]
    assert [i["id"] for i in second["results"]] == [str(made[0].id)]
    assert second["next"] is None and second["previous"]


def test_it_filters_images_by_conversation(api: Any, user: Any) -> None:
    one, two = (Conversation.objects.create(user=user, title=t) for t in "ab")
    mine = make_image(user, one, 1)
    make_image(user, two, 2)
    data = api.get(f"/api/images?conversation_id={one.pk}").json()["data"]
    assert [i["id"] for i in data["results"]] == [str(mine.id)]
    assert data["results"][0]["conversationId"] == str(one.pk)


def test_it_refuses_a_malformed_conversation_id(api: Any) -> None:
    response = api.get("/api/images?conversation_id=not-a-uuid")
    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "conversation_id"
    assert "not-a-uuid" in response.json()["error"]["message"]


def test_it_lists_only_the_users_own_images(api: Any, other_user: Any) -> None:
    make_image(other_user)
    assert api.get("/api/images").json()["data"]["count"] == 0


def test_it_shows_one_image_with_its_urls(api: Any, image: Image) -> None:
    response = api.get(f"/api/images/{image.id}")
    assert response.status_code == 200
    data = response.json()["data"]
    assert (data["width"], data["height"], data["mimeType"]) == (320, 200, "image/png")
    assert data["url"] == f"http://testserver/files/{image.id}.png"
    assert data["thumbnailUrl"] == f"http://testserver/files/{image.id}/thumbnail"


def test_it_answers_404_for_another_users_image_detail(api: Any, other_user: Any) -> None:
    response = api.get(f"/api/images/{make_image(other_user).id}")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_it_serves_the_file_with_etag_and_long_private_caching(api: Any, image: Image) -> None:
    response = api.get(f"/files/{image.id}.png")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response.getvalue() == storage.read(image.file)
    assert response["ETag"] == f'"{image.sha256}"'
    assert set(response["Cache-Control"].replace(" ", "").split(",")) == {"private", "max-age=31536000", "immutable"}


def test_it_answers_304_when_the_client_has_the_file(api: Any, image: Image) -> None:
    response = api.get(f"/files/{image.id}.png", HTTP_IF_NONE_MATCH=f'"{image.sha256}"')
    assert response.status_code == 304 and not response.content
    assert response["ETag"] == f'"{image.sha256}"'


def test_it_serves_a_thumbnail(api: Any, image: Image) -> None:
    response = api.get(f"/files/{image.id}/thumbnail")
    assert response.status_code == 200 and response["Content-Type"] == "image/webp"
    thumbnail = PIL.Image.open(io.BytesIO(response.getvalue()))
    assert thumbnail.format == "WEBP" and max(thumbnail.size) <= 384
    assert response["ETag"] != f'"{image.sha256}"'


@pytest.mark.parametrize("suffix", [".png", "/thumbnail"])
def test_it_asks_for_credentials_without_auth(image: Image, suffix: str) -> None:
    response = APIClient().get(f"/files/{image.id}{suffix}")
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Bearer"


def test_it_refuses_a_wrong_token_for_a_file(image: Image) -> None:
    response = APIClient().get(f"/files/{image.id}.png", HTTP_AUTHORIZATION="Bearer not-a-token")
    assert response.status_code == 401


def test_it_answers_404_for_another_users_file(api: Any, other_user: Any) -> None:
    theirs = make_image(other_user)
    assert api.get(f"/files/{theirs.id}.png").status_code == 404
    assert api.get(f"/files/{uuid.uuid4()}.png").status_code == 404


def test_it_serves_a_signed_url_without_auth(image: Image) -> None:
    response = APIClient().get(image.signed_url())
    assert response.status_code == 200
    assert response.getvalue() == storage.read(image.file)


def test_it_refuses_a_tampered_signed_url(image: Image, other_user: Any) -> None:
    url = image.signed_url()
    assert APIClient().get(url[:-2] + ("AA" if not url.endswith("AA") else "BB")).status_code == 401
    # A valid signature of one image does not open another.
    other = make_image(other_user, shade=9)
    assert APIClient().get(url.replace(str(image.id), str(other.id))).status_code == 401


def test_it_refuses_an_expired_signed_url(image: Image, settings: Any) -> None:
    url = image.signed_url()
    settings.SIGNED_URL_MAX_AGE = -1
    assert APIClient().get(url).status_code == 401


def test_it_pages_by_cursor_so_new_images_never_shift_a_page(api: Any, user: Any) -> None:
    made = [make_image(user, shade=shade) for shade in range(5)]
    newest_first = [str(image.id) for image in reversed(made)]
    first = api.get("/api/images?page_size=2").json()["data"]
    assert "cursor=" in first["next"] and "page=" not in first["next"]
    make_image(user, shade=90)  # generated while the client pages: page 2 must not repeat an image
    seen = [i["id"] for i in first["results"]]
    page = first
    while page["next"]:
        page = api.get(path_of(page["next"])).json()["data"]
        seen += [i["id"] for i in page["results"]]
    assert seen == newest_first
    assert (page["page"], page["count"], page["pages"]) == (3, 6, 3)
    back = api.get(path_of(page["previous"])).json()["data"]
    assert [i["id"] for i in back["results"]] == newest_first[2:4] and back["page"] == 2


def test_it_refuses_a_cursor_it_did_not_give(api: Any) -> None:
    response = api.get("/api/images?cursor=not-a-cursor")
    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "cursor"


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris"])
def test_its_written_out_representation_is_what_drf_makes_of_the_fields(user: Any, settings: Any, zone: str) -> None:
    """ImageSerializer.to_representation() skips DRF's field building; this holds it to DRF's output."""
    settings.TIME_ZONE = zone
    conversation = Conversation.objects.create(user=user, title="t")
    message = Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT, text="")
    answer = make_image(user, conversation, 1)
    Image.objects.filter(pk=answer.pk).update(message=message, cost=Decimal("0.0336"), favorite=True)
    reference = make_image(user, shade=2)  # no conversation, no message, no cost
    Image.objects.filter(pk=reference.pk).update(role=Image.Role.INPUT, prompt="")
    # Read back, and as the pipeline has it in hand after create() (an enum role, an in-memory datetime).
    images = [Image.objects.get(pk=answer.pk), Image.objects.get(pk=reference.pk), answer]
    serializer = ImageSerializer(context={"request": RequestFactory().get("/")})
    for image in images:
        written = serializer.to_representation(image)
        drf = serializers.ModelSerializer.to_representation(serializer, image)
        assert written == drf
        assert list(written) == list(drf) == serializer.Meta.fields
