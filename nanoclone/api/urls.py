"""The native REST API (/api/..., README: "REST API") and the image files it links to."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from nanoclone.api import conversations, envelope, images, keys, usage

urlpatterns = [
    path("api/generate", conversations.GenerateView.as_view(), name="api-generate"),
    path("api/keys", keys.KeysView.as_view(), name="api-keys"),
    path("api/models", conversations.ModelList.as_view(), name="api-models"),
    path("api/conversations", conversations.ConversationList.as_view(), name="api-conversations"),
    path(
        "api/conversations/<uuid:conversation_id>",
        conversations.ConversationDetail.as_view(),
        name="api-conversation",
    ),
    path("api/usage", usage.UsageView.as_view(), name="api-usage"),
    path("api/images", images.ImageList.as_view(), name="api-images"),
    path("api/images/<uuid:pk>", images.ImageDetail.as_view(), name="api-image"),
    path("api/schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("files/<uuid:image_id>.<str:extension>", images.image_file, name="image-file"),
    path("files/<uuid:image_id>/thumbnail", images.image_thumbnail, name="image-thumbnail"),
    path("files/<uuid:image_id>/display", images.image_display, name="image-display"),
]

# Last: whatever else starts with /api/ answers JSON in the envelope, not the HTML 404 page.
not_found = [re_path(r"^api/", envelope.api_not_found)]
