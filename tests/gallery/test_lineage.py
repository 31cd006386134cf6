"""Lineage: every generated image knows what it was made from, whatever door made it."""

from __future__ import annotations

from typing import Any

import pytest

from conversations import chat, pipeline
from gallery import browse, lineage
from gallery.models import Image
from tests.conftest import emulator_requests, png_bytes

pytestmark = pytest.mark.django_db


def make(user: Any, prompt: str, **fields: Any) -> Image:
    job = pipeline.start(pipeline.GenerationRequest(user=user, prompt=prompt, **fields), pipeline.RunMode.INLINE)
    assert job.state == "succeeded", job.error
    return Image.objects.get(job=job, role=Image.Role.OUTPUT)


def test_a_continued_conversation_edits_its_previous_image(user: Any, add_key: Any) -> None:
    add_key()
    first = make(user, "a lighthouse")
    second = make(user, "now at night", conversation_id=str(first.conversation_id))
    third = make(user, "with a moon", conversation_id=str(first.conversation_id))
    assert first.edited_from is None
    assert Image.objects.get(pk=second.pk).edited_from == first
    assert Image.objects.get(pk=third.pk).edited_from == second
    assert lineage.of(first).edits == [Image.objects.get(pk=second.pk)]


def test_a_gallery_reference_is_what_a_new_image_edits_and_an_upload_is_a_reference(user: Any, add_key: Any) -> None:
    add_key()
    source = make(user, "a fox")
    edited = make(user, "the fox in a hat", references=[str(source.pk)])
    assert edited.conversation_id != source.conversation_id and Image.objects.get(pk=edited.pk).edited_from == source
    uploaded = make(user, "this as a postcard", references=[png_bytes((64, 48))])
    found = lineage.of(uploaded)
    assert found.edited_from is None and len(found.references) == 1 and found.references[0].original is None
    both = make(user, "the two together", references=[png_bytes((64, 48)), str(source.pk)])
    found = lineage.of(both)
    assert found.edited_from == source
    assert [reference.original for reference in found.references] == [None, source]
    assert sorted(i.prompt for i in lineage.of(source).edits) == ["the fox in a hat", "the two together"]


def test_a_regenerated_turn_edits_the_image_its_history_gave_gemini_not_the_one_it_replaces(
    user: Any, add_key: Any, emu: Any
) -> None:
    add_key()
    first = make(user, "a red bicycle")
    second = make(user, "make it blue", conversation_id=str(first.conversation_id))
    assert second.job is not None
    again = pipeline.run(chat.regenerate(second.job).id)
    assert again is not None and again.state == "succeeded", again
    once_more = pipeline.run(chat.regenerate(again).id)
    assert once_more is not None and once_more.state == "succeeded", once_more
    # Gemini got the red bicycle (prompt, image, prompt) each time, never a blue one.
    assert [(r["turns"], r["inline_images"]) for r in emulator_requests(emu)][2:] == [(3, 1), (3, 1)]
    for turn in (again, once_more):
        assert Image.objects.get(job=turn, role=Image.Role.OUTPUT).edited_from == first
    assert sorted(i.prompt for i in lineage.of(first).edits) == ["make it blue"] * 3
    assert lineage.of(Image.objects.get(pk=second.pk)).edits == []


def test_an_image_older_than_the_history_sent_is_not_what_a_turn_edits(user: Any, add_key: Any, settings: Any) -> None:
    add_key()
    settings.HISTORY_TURNS = 1
    first = make(user, "a lighthouse")
    second = make(user, "at night", conversation_id=str(first.conversation_id))
    browse.delete_image(second)  # the one turn Gemini gets next has no image left
    third = make(user, "with a moon", conversation_id=str(first.conversation_id))
    assert third.edited_from is None
