"""The browser pages (login required): chat, gallery and keys."""

from collections.abc import Callable

from django.http import HttpResponseBase
from django.urls import path
from django.views.generic import RedirectView

from nanoclone.pages import account, chat, gallery, keys, sidebar


def _without_slash(name: str) -> Callable[..., HttpResponseBase]:
    """`/gallery/` as typed or bookmarked: the page's address, its query kept."""
    return RedirectView.as_view(pattern_name=name, query_string=True, permanent=True)


urlpatterns = [
    path("", chat.chat_page, name="chat"),
    path("c/<uuid:conversation_id>", chat.chat_page, name="chat-conversation"),
    path("c/send", chat.send, name="chat-send"),
    path("c/sidebar", sidebar.sidebar_list, name="chat-sidebar"),
    path("c/<uuid:conversation_id>/rename", chat.rename, name="chat-rename"),
    path("c/<uuid:conversation_id>/delete", chat.delete, name="chat-delete"),
    path("c/turns/<uuid:job_id>", chat.turn_answer, name="chat-turn"),
    path("c/turns/<uuid:job_id>/retry", chat.retry, name="chat-retry"),
    path("c/turns/<uuid:job_id>/cancel", chat.cancel, name="chat-cancel"),
    path("gallery", gallery.gallery_page, name="gallery"),
    path("gallery/", _without_slash("gallery")),
    path("gallery/selection", gallery.selection, name="gallery-selection"),
    path("gallery/selection.zip", gallery.selection_zip, name="gallery-selection-zip"),
    path("gallery/<uuid:image_id>", gallery.image_page, name="gallery-image"),
    path("gallery/<uuid:image_id>/favorite", gallery.favorite, name="gallery-favorite"),
    path("gallery/<uuid:image_id>/delete", gallery.delete, name="gallery-delete"),
    path("gallery/boards/<int:board_id>/rename", gallery.rename_board, name="gallery-board-rename"),
    path("gallery/boards/<int:board_id>/delete", gallery.delete_board, name="gallery-board-delete"),
    path("boards/<str:token>", gallery.shared_board, name="board-shared"),
    path("settings", account.settings_page, name="settings"),
    path("settings/", _without_slash("settings")),
    path("settings/token", account.rotate_token, name="settings-token"),
    path("settings/defaults", account.save_defaults, name="settings-defaults"),
    path("keys", keys.keys_page, name="keys"),
    path("keys/", _without_slash("keys")),
    path("keys/add", keys.add, name="keys-add"),
    path("keys/<int:key_id>/toggle", keys.toggle, name="keys-toggle"),
    path("keys/<int:key_id>/limit", keys.set_limit, name="keys-limit"),
    path("keys/<int:key_id>/project", keys.set_project, name="keys-project"),
    path("keys/<int:key_id>/proxy", keys.set_proxy, name="keys-proxy"),
    path("keys/quota-limit", keys.set_quota_limit, name="keys-quota-limit"),
    path("keys/sync-models", keys.sync_models, name="keys-sync-models"),
    path("keys/<int:key_id>/test", keys.retest, name="keys-test"),
    path("keys/<int:key_id>/delete", keys.delete, name="keys-delete"),
]
