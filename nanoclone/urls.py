"""Every door's routes: the native API, the compatible dialects, the pages, admin and /health.

/mcp is not here: nanoclone.asgi hands it to the MCP transport before Django sees it.
"""

from django.contrib import admin
from django.urls import include, path, re_path

from nanoclone import health, metrics
from nanoclone.api import urls as api_urls
from nanoclone.dialects import acedata, evolink, gemini, gemini_batches, jobs, openai, runbase

# Gemini's own paths, under both of its API versions: /v1beta (google-genai's default) and /v1.
GEMINI = r"^(?P<version>v1beta|v1)/models"
GEMINI_BATCHES = r"^(?P<version>v1beta|v1)/batches"

urlpatterns = [
    path("health", health.health, name="health"),
    path("metrics", metrics.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    *api_urls.urlpatterns,
    # Drop-in compatible dialects of hosted Nano Banana APIs (README: "Switch your client").
    path("v1/images/generations", evolink.GenerationsView.as_view(), name="evolink-generations"),
    path("v1/tasks/<str:task>", evolink.TaskView.as_view(), name="evolink-task"),
    path("v1/tasks/<str:task>/cancel", evolink.TaskCancelView.as_view(), name="evolink-task-cancel"),
    path("api/v1/runs", runbase.RunsView.as_view(), name="runbase-runs"),
    path("api/v1/runs/<str:run_id>", runbase.RunView.as_view(), name="runbase-run"),
    path("nano-banana/images", acedata.ImagesView.as_view(), name="acedata-images"),
    path("nano-banana/tasks", acedata.TasksView.as_view(), name="acedata-tasks"),
    path("api/images/generate", jobs.GenerateJobView.as_view(), name="jobs-generate"),
    path("api/images/status/<str:job_id>", jobs.JobStatusView.as_view(), name="jobs-status"),
    path("api/images/result/<str:job_id>", jobs.JobResultView.as_view(), name="jobs-result"),
    # Gemini's API and OpenAI's Images API, for existing tools (README: "Use NanoClone from your tools").
    re_path(
        rf"{GEMINI}/(?P<model>[^/:]+):generateContent$", gemini.GenerateContentView.as_view(), name="gemini-generate"
    ),
    re_path(
        rf"{GEMINI}/(?P<model>[^/:]+):streamGenerateContent$",
        gemini.StreamGenerateContentView.as_view(),
        name="gemini-stream",
    ),
    re_path(
        rf"{GEMINI}/(?P<model>[^/:]+):batchGenerateContent$",
        gemini_batches.BatchGenerateContentView.as_view(),
        name="gemini-batch-generate",
    ),
    re_path(rf"{GEMINI_BATCHES}$", gemini_batches.BatchesView.as_view(), name="gemini-batches"),
    re_path(rf"{GEMINI_BATCHES}/(?P<batch>[^/:]+)$", gemini_batches.BatchView.as_view(), name="gemini-batch"),
    re_path(
        rf"{GEMINI_BATCHES}/(?P<batch>[^/:]+):cancel$",
        gemini_batches.BatchCancelView.as_view(),
        name="gemini-batch-cancel",
    ),
    re_path(rf"{GEMINI}$", gemini.ModelsView.as_view(), name="gemini-models"),
    re_path(rf"{GEMINI}/(?P<model>[^/:]+)$", gemini.ModelView.as_view(), name="gemini-model"),
    path("openai/v1/images/generations", openai.GenerationsView.as_view(), name="openai-generations"),
    path("openai/v1/images/edits", openai.EditsView.as_view(), name="openai-edits"),
    path("openai/v1/models", openai.ModelsView.as_view(), name="openai-models"),
    path("openai/v1/models/<str:model>", openai.ModelView.as_view(), name="openai-model"),
    # Last: whatever else is under these prefixes answers JSON in its door's shape, not the HTML 404 page.
    *api_urls.not_found,
    re_path(r"^(?:v1beta/|v1/models|v1/batches)", gemini.not_found),
    re_path(r"^[^/]+/(?:models|batches)(?:[/:]|$)", gemini.not_found),  # Gemini's paths under a version it hasn't
    re_path(r"^openai/", openai.not_found),
    # Browser pages (login required) and Django's login/logout.
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("nanoclone.pages.urls")),
]
