"""The gallery page through Django's test client: order, pages, filters, lightbox, favourite, delete."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from conversations import pipeline
from conversations.models import Conversation, Job
from gallery import storage
from gallery.models import Image
from tests.conftest import png_bytes

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


@pytest.fixture
def browser(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


def make_images(user: Any, prompts: list[str], **fields: Any) -> list[Image]:
    """Images as the pipeline leaves them (files on disk), newest last."""
    stored = storage.store(png_bytes((64, 48)))
    now = timezone.now()
    images = []
    for number, prompt in enumerate(prompts):
        images.append(
            Image.objects.create(
                user=user,
                file=stored.file,
                thumbnail=stored.thumbnail,
                sha256=stored.sha256,
                mime_type="image/png",
                width=64,
                height=48,
                bytes=stored.bytes,
                prompt=prompt,
                model=fields.get("model", "gemini-3.1-flash-image"),
                conversation=fields.get("conversation"),
                favorite=fields.get("favorite", False),
                created_at=fields.get("created_at", now) + dt.timedelta(seconds=number),
            )
        )
    return images


def next_url(html: str) -> str:
    found = re.search(r'hx-get="([^"]+)"', html)
    assert found, "no next page"
    return unescape(found.group(1))


def tile_prompts(html: str) -> list[str]:
    return [unescape(alt) for alt in re.findall(r'<img src="/files/[^"]+/thumbnail" alt="([^"]*)"', html)]


def test_it_shows_the_newest_images_first(browser: Client, user: Any) -> None:
    make_images(user, ["first", "second", "third"])
    assert tile_prompts(browser.get("/gallery").content.decode()) == ["third", "second", "first"]


def test_it_pages_in_a_stable_order_that_new_images_do_not_shift(browser: Client, user: Any, settings: Any) -> None:
    settings.GALLERY_PAGE_SIZE = 2
    make_images(user, ["a", "b", "c", "d", "e"])
    first = browser.get("/gallery").content.decode()
    assert tile_prompts(first) == ["e", "d"]
    make_images(user, ["newer"], created_at=timezone.now() + dt.timedelta(hours=1))
    second = browser.get(next_url(first), headers=HTMX).content.decode()
    assert tile_prompts(second) == ["c", "b"]
    third = browser.get(next_url(second), headers=HTMX)
    assert tile_prompts(third.content.decode()) == ["a"] and "Load more" not in third.content.decode()


def test_it_restores_everything_scrolled_through(browser: Client, user: Any, settings: Any) -> None:
    settings.GALLERY_PAGE_SIZE = 2
    make_images(user, ["a", "b", "c", "d", "e"])
    second = browser.get(next_url(browser.get("/gallery").content.decode()), headers=HTMX).content.decode()
    through = next_url(second).split("after=", 1)[1].split("&", 1)[0]
    restored = browser.get(f"/gallery?through={through}&fragment=items", headers=HTMX).content.decode()
    assert tile_prompts(restored) == ["e", "d", "c", "b"]


def test_it_searches_prompts(browser: Client, user: Any) -> None:
    make_images(user, ["a red fox", "a blue whale", "a Red panda"])
    page = browser.get("/gallery", {"q": "red"}).content.decode()
    assert tile_prompts(page) == ["a Red panda", "a red fox"]
    # The count follows the page (a search's count can take longer than the page itself).
    count = re.search(r'<p class="muted" id="gallery-count"[^>]* hx-get="([^"]+)" hx-trigger="load">', page)
    assert count and "Counting the matches…" in page
    fragment = browser.get(unescape(count.group(1)), headers=HTMX)
    assert fragment.content.decode().strip() == "2 images match the filters"
    unfiltered = browser.get("/gallery").content.decode()
    assert '<p class="muted" id="gallery-count">3 images</p>' in unfiltered  # cheap: in the page


def test_it_filters_by_conversation_model_date_and_favourites(browser: Client, user: Any) -> None:
    talk = Conversation.objects.create(user=user, title="Foxes")
    make_images(user, ["in talk"], conversation=talk)
    make_images(user, ["pro"], model="gemini-3-pro-image")
    make_images(user, ["loved"], favorite=True)
    make_images(user, ["old"], created_at=timezone.now() - dt.timedelta(days=30))
    assert tile_prompts(browser.get("/gallery", {"conversation": str(talk.pk)}).content.decode()) == ["in talk"]
    assert tile_prompts(browser.get("/gallery", {"model": "gemini-3-pro-image"}).content.decode()) == ["pro"]
    assert tile_prompts(browser.get("/gallery", {"favorites": "1"}).content.decode()) == ["loved"]
    old_day = (timezone.now() - dt.timedelta(days=30)).date().isoformat()
    assert tile_prompts(browser.get("/gallery", {"from": old_day, "to": old_day}).content.decode()) == ["old"]


def test_the_conversation_filter_offers_the_users_conversations_newest_first(
    browser: Client, user: Any, other_user: Any
) -> None:
    older = Conversation.objects.create(user=user, title="<b>Foxes</b> & friends")
    newer = Conversation.objects.create(user=user, title="")
    long = Conversation.objects.create(user=user, title="A lighthouse at dusk, painted in oils with a stormy sea")
    Conversation.objects.filter(pk=older.pk).update(updated_at=timezone.now() - dt.timedelta(days=1))
    Conversation.objects.create(user=other_user, title="not mine")
    page = browser.get("/gallery", {"conversation": str(older.pk)}).content.decode()
    select = page.split('<select id="f-conversation" name="conversation">', 1)[1].split("</select>", 1)[0]
    options = re.findall(r'<option value="([^"]*)"( selected)?>([^<]*)</option>', select)
    assert options == [
        ("", "", "All"),
        (str(long.pk), "", "A lighthouse at dusk, painted in oils with a st…"),
        (str(newer.pk), "", "Untitled"),
        (str(older.pk), " selected", "&lt;b&gt;Foxes&lt;/b&gt; &amp; friends"),
    ]


def test_it_ignores_filters_that_do_not_parse(browser: Client, user: Any) -> None:
    make_images(user, ["one"])
    response = browser.get("/gallery", {"from": "yesterday", "conversation": "nope", "after": "garbage"})
    assert response.status_code == 200 and tile_prompts(response.content.decode()) == ["one"]


def test_it_shows_an_images_details_in_the_lightbox(browser: Client, user: Any) -> None:
    (image,) = make_images(user, ["a lighthouse"])
    fragment = browser.get(f"/gallery/{image.pk}", headers=HTMX).content.decode()
    assert "a lighthouse" in fragment and "64 \u00d7 48 px" in fragment and "Nano Banana 2" in fragment
    assert f"{image.get_absolute_url()}?download=1" in fragment
    assert "/?prompt=a+lighthouse&amp;model=gemini-3.1-flash-image" in fragment  # reuse prompt
    assert "<html" not in fragment
    assert "<html" in browser.get(f"/gallery/{image.pk}").content.decode()  # also a page of its own


def continue_url(browser: Client, image: Image) -> str:
    fragment = browser.get(f"/gallery/{image.pk}", headers=HTMX).content.decode()
    found = re.search(r'<a class="button" href="([^"]*)">Continue editing</a>', fragment)
    assert found, "no Continue editing"
    return unescape(found.group(1))


def test_continue_editing_goes_on_in_the_conversation_from_the_turn_its_next_prompt_edits(
    browser: Client, user: Any, add_key: Any
) -> None:
    add_key()

    def turn(prompt: str, **fields: Any) -> Job:
        request = pipeline.GenerationRequest(user=user, prompt=prompt, num_images=2, source="chat", **fields)
        return pipeline.submit(request)

    first = turn("a lighthouse")
    pipeline.run(first.id)
    conversation = f"/c/{first.conversation_id}"
    older, latest = Image.objects.filter(job=first).order_by("index")
    assert continue_url(browser, older) == continue_url(browser, latest) == conversation
    (alone,) = make_images(user, ["no conversation"])
    assert continue_url(browser, alone) == f"/?reference={alone.pk}"

    seen: dict[str, str] = {}

    def look(moving: Job) -> None:
        # The second turn has stored one of its images: a prompt sent now still edits the first turn's.
        if not seen and (partial := Image.objects.filter(job=moving).first()):
            seen.update(partial=continue_url(browser, partial), reference=f"/?reference={partial.pk}")
            seen.update(first=continue_url(browser, latest))

    second = turn("at night", conversation_id=first.conversation_id)
    pipeline.run(second.id, on_progress=look)
    assert seen and seen["partial"] == seen["reference"] and seen["first"] == conversation
    assert [continue_url(browser, image) for image in Image.objects.filter(job=second)] == [conversation] * 2
    assert continue_url(browser, latest) == f"/?reference={latest.pk}"


def test_it_toggles_a_favourite(browser: Client, user: Any) -> None:
    (image,) = make_images(user, ["star"])
    response = browser.post(f"/gallery/{image.pk}/favorite", {"favorite": "1"}, headers=HTMX)
    assert response.status_code == 200 and 'aria-pressed="true"' in response.content.decode()
    assert Image.objects.get(pk=image.pk).favorite is True
    browser.post(f"/gallery/{image.pk}/favorite", {"favorite": "0"}, headers=HTMX)
    assert Image.objects.get(pk=image.pk).favorite is False


def test_it_deletes_an_image_and_its_file_when_unused(
    browser: Client, user: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    (image,) = make_images(user, ["gone soon"])
    path = settings.MEDIA_ROOT / image.file
    with django_capture_on_commit_callbacks(execute=True):  # the file goes once the deletion commits
        response = browser.post(f"/gallery/{image.pk}/delete", headers=HTMX)
    assert response.status_code == 200 and "imageDeleted" in response["HX-Trigger"]
    assert not Image.objects.exists() and not path.exists()


def test_it_keeps_a_file_another_image_still_uses(browser: Client, user: Any, settings: Any) -> None:
    first, _second = make_images(user, ["twin one", "twin two"])
    browser.post(f"/gallery/{first.pk}/delete")
    assert (settings.MEDIA_ROOT / first.file).exists()


def test_it_shows_only_the_users_own_images(browser: Client, user: Any, other_user: Any) -> None:
    (theirs,) = make_images(other_user, ["bob's image"])
    make_images(user, ["alice's image"])
    assert tile_prompts(browser.get("/gallery").content.decode()) == ["alice's image"]
    assert browser.get(f"/gallery/{theirs.pk}").status_code == 404
    assert browser.post(f"/gallery/{theirs.pk}/delete").status_code == 404
    assert Image.objects.filter(pk=theirs.pk).exists()


def test_it_renders_the_first_page_in_a_fixed_number_of_queries(
    browser: Client, user: Any, django_assert_max_num_queries: Any
) -> None:
    make_images(user, [f"image {n}" for n in range(80)])
    with django_assert_max_num_queries(6):
        assert browser.get("/gallery").status_code == 200
