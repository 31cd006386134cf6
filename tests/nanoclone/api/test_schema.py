"""/api/schema (OpenAPI, drf-spectacular) and /api/docs (Swagger UI) describe every API door: the
native API, the jobs API and the compatible dialects, each error in its door's own shape."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

from nanoclone import urls

pytestmark = pytest.mark.django_db

NATIVE = {"api-generate", "api-keys", "api-models", "api-conversations", "api-conversation", "api-images", "api-image"}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    response = Client().get("/api/schema?format=json")
    assert response.status_code == 200
    return response.json()


def component(schema: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    return schema["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]]


def test_it_documents_generate_with_its_request_fields(schema: dict[str, Any]) -> None:
    operation = schema["paths"]["/api/generate"]["post"]
    body = component(schema, operation["requestBody"]["content"]["application/json"]["schema"])
    assert set(body["properties"]) == {
        "prompt",
        "conversationId",
        "model",
        "aspectRatio",
        "resolution",
        "thinkingLevel",
        "grounding",
        "images",
    }
    assert body["required"] == ["prompt"]
    assert list(operation["requestBody"]["content"]) == ["application/json"]


def test_it_documents_generate_answers_in_the_envelope(schema: dict[str, Any]) -> None:
    responses = schema["paths"]["/api/generate"]["post"]["responses"]
    answer = component(schema, responses["200"]["content"]["application/json"]["schema"])
    assert set(answer["properties"]) == {"success", "data", "error"}
    data = component(schema, answer["properties"]["data"])
    message = component(schema, data["properties"]["message"])
    assert {"imageBase64", "images", "content"} <= set(message["properties"])
    error = component(schema, responses["400"]["content"]["application/json"]["schema"])
    assert set(component(schema, error["properties"]["error"])["properties"]) == {"code", "message", "details"}
    assert {"400", "401", "404", "413", "422", "503"} <= set(responses)


def test_it_documents_every_native_endpoint_with_bearer_auth(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    assert set(paths["/api/keys"]) == {"get", "post", "delete"}
    for path in ("/api/models", "/api/conversations", "/api/conversations/{conversation_id}", "/api/images"):
        assert {"bearerAuth": []} in paths[path]["get"]["security"]
    assert {p["name"] for p in paths["/api/images"]["get"]["parameters"]} == {
        "conversation_id",
        "page",
        "page_size",
        "cursor",
    }
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["bearerAuth"]["description"],
    }


def test_it_generates_a_valid_schema_for_the_native_api_without_warnings() -> None:
    native = [pattern for pattern in urls.urlpatterns if getattr(pattern, "name", None) in NATIVE]
    assert len(native) == len(NATIVE)
    GENERATOR_STATS.reset()
    generated = SchemaGenerator(patterns=native).get_schema(request=None, public=True)
    assert not GENERATOR_STATS, "drf-spectacular warned; run `manage.py spectacular --validate` to see why"
    validate_schema(generated)


def test_it_generates_a_valid_schema_for_every_door_without_warnings() -> None:
    GENERATOR_STATS.reset()
    generated = SchemaGenerator().get_schema(request=None, public=True)
    assert not GENERATOR_STATS, "drf-spectacular warned; run `manage.py spectacular --validate` to see why"
    validate_schema(generated)


# Each compatible door: an operation, the statuses it answers and the fields of its own error shape.
DIALECTS = [
    ("/v1/images/generations", "post", "evolink", {"200", "400", "401", "409", "413", "415", "429", "503"}),
    ("/v1/tasks/{task}", "get", "evolink", {"200", "401", "404"}),
    ("/v1/tasks/{task}/cancel", "post", "evolink", {"200", "404", "409"}),
    ("/api/v1/runs", "post", "runbase", {"201", "400", "401", "402", "409", "413", "415", "429"}),
    ("/api/v1/runs/{run_id}", "get", "runbase", {"200", "401", "404"}),
    ("/nano-banana/images", "post", "acedata", {"200", "400", "401", "409", "413", "415", "422", "429", "503"}),
    ("/nano-banana/tasks", "post", "acedata", {"200", "400", "401", "404"}),
    ("/{version}/models/{model}:generateContent", "post", "gemini", {"200", "400", "401", "404", "429", "503"}),
    ("/{version}/models/{model}:streamGenerateContent", "post", "gemini", {"200", "400", "404", "429", "503"}),
    ("/{version}/models", "get", "gemini", {"200", "401"}),
    ("/{version}/models/{model}", "get", "gemini", {"200", "401", "404"}),
    ("/openai/v1/images/generations", "post", "openai", {"200", "400", "401", "409", "413", "429", "503"}),
    ("/openai/v1/images/edits", "post", "openai", {"200", "400", "401", "413", "415", "429", "503"}),
    ("/openai/v1/models", "get", "openai", {"200", "401"}),
    ("/openai/v1/models/{model}", "get", "openai", {"200", "401", "404"}),
]
ERROR_FIELDS = {
    "evolink": ("error", {"code", "message", "type", "param"}),
    "runbase": ("error", {"status", "code", "message", "param"}),
    "acedata": (None, {"success", "error", "trace_id", "task_id"}),
    "gemini": ("error", {"code", "message", "status", "details"}),
    "openai": ("error", {"message", "type", "param", "code"}),
}


@pytest.mark.parametrize(("path", "method", "door", "statuses"), DIALECTS)
def test_it_documents_each_compatible_door_with_its_own_errors(
    schema: dict[str, Any], path: str, method: str, door: str, statuses: set[str]
) -> None:
    operation = schema["paths"][path][method]
    assert operation["tags"] == [door]
    assert statuses <= set(operation["responses"])
    wrapper, fields = ERROR_FIELDS[door]
    error = component(schema, operation["responses"]["401"]["content"]["application/json"]["schema"])
    shape = component(schema, error["properties"][wrapper]) if wrapper else error
    assert set(shape["properties"]) == fields


def test_it_documents_the_doors_own_request_formats(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    edit = paths["/openai/v1/images/edits"]["post"]["requestBody"]["content"]
    assert set(edit) == {"multipart/form-data", "application/json"}
    upload = component(schema, edit["multipart/form-data"]["schema"])
    assert upload["properties"]["image"]["items"]["format"] == "binary"
    stream = paths["/{version}/models/{model}:streamGenerateContent"]["post"]["responses"]["200"]["content"]
    assert set(stream) == {"application/json", "text/event-stream"}
    version = next(p for p in paths["/{version}/models"]["get"]["parameters"] if p["name"] == "version")
    assert sorted(version["schema"]["enum"]) == ["v1", "v1beta"]
    gemini = paths["/{version}/models/{model}:generateContent"]["post"]["security"]
    assert gemini == [{"geminiApiKey": []}, {"geminiBearer": []}]


def test_it_serves_swagger_ui_from_our_own_static_files(db: Any) -> None:
    response = Client().get("/api/docs")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "swagger-ui" in page and "/api/schema" in page
    assert "cdn.jsdelivr.net" not in page  # works offline
    bundle = re.search(r'src="(/static/[^"]+swagger-ui-bundle\.js)"', page)
    assert bundle and Client().get(bundle.group(1)).status_code == 200


@pytest.mark.parametrize("path", ["/api/schema", "/api/docs"])
@pytest.mark.parametrize("authorization", [None, "Bearer not-a-real-token", "Token nope", "Basic YWxpY2U6cHc="])
def test_it_serves_the_schema_and_docs_to_anyone_whatever_token_comes_along(
    db: Any, path: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    assert Client().get(path, headers=headers).status_code == 200


def test_it_documents_nullable_times_and_non_empty_prompts(schema: dict[str, Any]) -> None:
    key = schema["components"]["schemas"]["ApiKey"]["properties"]
    assert key["exhaustedUntil"]["nullable"] and key["lastUsedAt"]["nullable"]
    assert schema["components"]["schemas"]["Image"]["properties"]["messageId"]["nullable"]
    generate = schema["components"]["schemas"]["Generate"]["properties"]
    assert generate["prompt"]["minLength"] == 1 and generate["images"]["items"]["minLength"] == 1


def test_it_documents_every_error_the_jobs_api_answers(schema: dict[str, Any]) -> None:
    generate = schema["paths"]["/api/images/generate"]["post"]["responses"]
    assert {"202", "400", "401", "503"} <= set(generate) and "200" not in generate
    error = component(schema, generate["400"]["content"]["application/json"]["schema"])
    assert {"detail", "message"} <= set(error["properties"])  # the document's shape, not the envelope
    for path in ("/api/images/status/{job_id}", "/api/images/result/{job_id}", "/api/conversations/{conversation_id}"):
        assert {"200", "401", "404"} <= set(schema["paths"][path]["get"]["responses"])


def test_a_page_size_that_is_not_a_number_is_refused(api: Any) -> None:
    response = api.get("/api/images?page_size=null")
    assert response.status_code == 400 and response.json()["error"]["details"]["field"] == "page_size"


def test_every_operation_documents_the_503_of_a_busy_database(schema: dict[str, Any]) -> None:
    undocumented = [
        f"{method.upper()} {path}"
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if method in ("get", "post", "put", "patch", "delete") and "503" not in operation["responses"]
    ]
    assert not undocumented
