"""What the studio pages keep for each user besides their images and conversations."""

from __future__ import annotations

from django.conf import settings
from django.db import models


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
