"""Lineage: every generated image knows what it was made from, whatever door made it."""

from __future__ import annotations

from typing import Any

import pytest

from conversations import pipeline
from gallery import lineage
from gallery.models import Image
from tests.conftest import png_bytes

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
