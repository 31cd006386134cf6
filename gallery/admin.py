from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from gallery import browse
from gallery.models import Image, ImageQuerySet


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ("preview", "short_prompt", "user", "role", "model", "dimensions", "favorite", "created_at")
    list_filter = ("role", "model", "favorite", "mime_type", "created_at")
    search_fields = ("prompt", "sha256", "user__username")
    date_hierarchy = "created_at"
    list_select_related = ("user",)
    raw_id_fields = ("user", "conversation", "message", "job")
    readonly_fields = (
        "preview_large",
        "file",
        "thumbnail",
        "sha256",
        "mime_type",
        "width",
        "height",
        "bytes",
        "created_at",
    )
    exclude = ("thought_signature",)
    actions = ["delete_with_files"]

    @admin.display(description="image")
    def preview(self, image: Image) -> str:
        return format_html('<img src="{}" alt="" style="height: 48px; border-radius: 4px">', image.thumbnail_url())

    @admin.display(description="preview")
    def preview_large(self, image: Image) -> str:
        return format_html('<img src="{}" alt="" style="max-height: 320px">', image.thumbnail_url())

    @admin.display(description="prompt")
    def short_prompt(self, image: Image) -> str:
        return image.prompt[:80]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # it would leave the files behind; delete_with_files replaces it
        return actions

    def delete_model(self, request: HttpRequest, obj: Image) -> None:
        browse.delete_image(obj)

    @admin.action(description="Delete selected images and their files")
    def delete_with_files(self, request: HttpRequest, queryset: ImageQuerySet) -> None:
        count = queryset.delete_with_files()
        self.message_user(request, f"Deleted {count} image(s).")
