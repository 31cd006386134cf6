from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from conversations import api as conversations_api
from gallery import api as gallery_api
from keys import api as keys_api
from nanoclone import jobs_api, views
from nanoclone.dialects import acedata, evolink, runbase

urlpatterns = [
    path("health", views.health, name="health"),
    path("admin/", admin.site.urls),
    path("api/generate", conversations_api.GenerateView.as_view(), name="api-generate"),
    path("api/keys", keys_api.KeysView.as_view(), name="api-keys"),
    path("api/models", conversations_api.ModelList.as_view(), name="api-models"),
    path("api/conversations", conversations_api.ConversationList.as_view(), name="api-conversations"),
    path(
        "api/conversations/<uuid:conversation_id>",
        conversations_api.ConversationDetail.as_view(),
        name="api-conversation",
    ),
    path("api/images", gallery_api.ImageList.as_view(), name="api-images"),
    path("api/images/<uuid:pk>", gallery_api.ImageDetail.as_view(), name="api-image"),
    path("api/schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("files/<uuid:image_id>.<str:extension>", gallery_api.image_file, name="image-file"),
    path("files/<uuid:image_id>/thumbnail", gallery_api.image_thumbnail, name="image-thumbnail"),
    # Drop-in compatible dialects of hosted Nano Banana APIs (README: "Switch your client").
    path("v1/images/generations", evolink.GenerationsView.as_view(), name="evolink-generations"),
    path("v1/tasks/<str:task>", evolink.TaskView.as_view(), name="evolink-task"),
    path("v1/tasks/<str:task>/cancel", evolink.TaskCancelView.as_view(), name="evolink-task-cancel"),
    path("api/v1/runs", runbase.RunsView.as_view(), name="runbase-runs"),
    path("api/v1/runs/<str:run_id>", runbase.RunView.as_view(), name="runbase-run"),
    path("nano-banana/images", acedata.ImagesView.as_view(), name="acedata-images"),
    path("nano-banana/tasks", acedata.TasksView.as_view(), name="acedata-tasks"),
    path("api/images/generate", jobs_api.GenerateJobView.as_view(), name="jobs-generate"),
    path("api/images/status/<str:job_id>", jobs_api.JobStatusView.as_view(), name="jobs-status"),
    path("api/images/result/<str:job_id>", jobs_api.JobResultView.as_view(), name="jobs-result"),
    re_path(r"^api/", views.api_not_found),
    # Browser pages (login required) and Django's login/logout.
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("conversations.urls")),
    path("", include("gallery.urls")),
    path("", include("keys.urls")),
]
