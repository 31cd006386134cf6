"""What an image was made from and what was made from it (the viewer's and the gallery's lineage)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q

from gallery.models import Image

SHOWN = 12  # edits listed under an image; the gallery's search finds the rest


@dataclass
class Lineage:
    edited_from: Image | None  # the image this one edits
    references: list[Image]  # the references sent with its prompt (`.original`: the gallery image, if any)
    edits: list[Image]  # images made from this one: edits of it, or with it as a reference


def of(image: Image) -> Lineage:
    parent = None
    if image.edited_from_id:
        parent = Image.objects.filter(pk=image.edited_from_id, user=image.user_id, role=Image.Role.OUTPUT).first()
    references = (
        list(
            Image.objects.filter(role=Image.Role.INPUT, message__job=image.job_id)
            .select_related("original")
            .order_by("index")
        )
        if image.job_id
        else []
    )
    used_in = Image.objects.filter(role=Image.Role.INPUT, original=image).values("message__job")
    edits = (
        Image.objects.filter(user=image.user_id, role=Image.Role.OUTPUT)
        .filter(Q(edited_from=image) | Q(job__in=used_in))
        .exclude(pk=image.pk)
        .order_by("created_at", "index")[:SHOWN]
    )
    return Lineage(parent, references, list(edits))
