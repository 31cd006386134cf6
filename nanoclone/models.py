"""What the studio pages keep for each user besides their images and conversations."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class StudioDefaults(models.Model):
    """What a new chat's prompt box starts with: the settings of the user's last prompt (use_last,
    also what a user without a row gets), or the ones chosen on the settings page."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="studio_defaults"
    )
    use_last = models.BooleanField(default=True)
    model = models.CharField(max_length=80, blank=True)
    aspect_ratio = models.CharField(max_length=10, blank=True)  # blank: the model chooses
    resolution = models.CharField(max_length=10, blank=True)  # blank: Gemini's default size
    thinking_level = models.CharField(max_length=10, blank=True)
    num_images = models.PositiveSmallIntegerField(default=1)

    class Meta:
        verbose_name_plural = "studio defaults"

    def __str__(self) -> str:
        return f"studio defaults of user {self.user_id}"


class GeminiBatch(models.Model):
    """A batch created through the Gemini door's Batch API (batchGenerateContent with inline requests):
    one job at the Batch API's price per request, in request order. Its state is read from its jobs;
    the door keeps only what Google's batch says besides them (display name, each item's metadata)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="gemini_batches")
    model = models.CharField(max_length=80)
    display_name = models.CharField(max_length=512, blank=True)
    # One per request, in order: {"job": "<job id>", "metadata": {...}, "text": whether it answers text}.
    items = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "-created_at"], name="gemini_batches_of_a_user")]

    def __str__(self) -> str:
        return f"batches/{self.id.hex}"
