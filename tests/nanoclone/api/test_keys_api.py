"""GET/POST/DELETE /api/keys: the key pool over the native API, secrets never shown, staff only."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from keys.models import ApiKey

pytestmark = pytest.mark.django_db

SECRET = "AIzaSyD-example-secret-0123456789x9Qk"


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["success"] is False and body["data"] is None
    return body["error"]


def test_it_lists_keys_masked_and_never_the_secret(api: Any) -> None:
    ApiKey.create(SECRET, label="Compte 1")
    response = api.get("/api/keys")
    assert response.status_code == 200
    [key] = response.json()["data"]
    assert key["label"] == "Compte 1" and key["key"] == "AIza…x9Qk"
    assert key["status"] == "active" and key["usedToday"] == 0 and key["dailyLimit"] == 500
    assert SECRET not in response.content.decode()
    assert SECRET[4:-4] not in response.content.decode()


def test_it_adds_a_key_with_label_limit_and_base_url(api: Any) -> None:
    response = api.post(
        "/api/keys",
        {"key": SECRET, "label": "EU proxy", "dailyLimit": 20, "baseUrl": "https://proxy.example.com"},
        format="json",
    )
    assert response.status_code == 201, response.content
    data = response.json()["data"]
    assert (data["label"], data["dailyLimit"], data["baseUrl"]) == ("EU proxy", 20, "https://proxy.example.com")
    assert SECRET not in response.content.decode()
    stored = ApiKey.objects.get(pk=data["id"])
    assert stored.secret == SECRET and SECRET not in stored.secret_encrypted


def test_it_adds_a_key_with_only_the_key(api: Any) -> None:
    response = api.post("/api/keys", {"key": "  " + SECRET + "  "}, format="json")
    assert response.status_code == 201
    assert ApiKey.objects.get().secret == SECRET


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({}, "key", "required"),
        ({"key": ""}, "key", "blank"),
        ({"key": 12345}, "key", "string"),
        ({"key": "AIza with spaces"}, "key", "no spaces"),
        ({"key": SECRET, "baseUrl": "not a url"}, "baseUrl", "valid URL"),
        ({"key": SECRET, "baseUrl": "ftp://proxy.example.com"}, "baseUrl", "http"),
        ({"key": SECRET, "dailyLimit": -1}, "dailyLimit", "greater than or equal to 0"),
        ({"key": SECRET, "dailyLimit": "many"}, "dailyLimit", "integer"),
    ],
)
def test_it_refuses_an_invalid_key(api: Any, body: dict[str, Any], field: str, fragment: str) -> None:
    error = error_of(api.post("/api/keys", body, format="json"), 400)
    assert error["details"]["field"] == field
    assert fragment.lower() in error["message"].lower()
    assert not ApiKey.objects.exists()


def test_it_refuses_a_key_already_in_the_pool(api: Any) -> None:
    ApiKey.create(SECRET)
    error = error_of(api.post("/api/keys", {"key": SECRET}, format="json"), 400)
    assert "already in the pool" in error["message"]
    assert ApiKey.objects.count() == 1


def test_it_deletes_a_key_by_id(api: Any) -> None:
    key = ApiKey.create(SECRET)
    response = api.delete(f"/api/keys?id={key.pk}")
    assert response.status_code == 200
    assert response.json()["data"] == {"deleted": key.pk}
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("query", ["", "?id=", "?id=abc"])
def test_it_asks_for_the_id_to_delete(api: Any, query: str) -> None:
    ApiKey.create(SECRET)
    assert "?id=" in error_of(api.delete(f"/api/keys{query}"), 400)["message"]
    assert ApiKey.objects.count() == 1


def test_it_answers_404_when_deleting_an_unknown_key(api: Any) -> None:
    assert error_of(api.delete("/api/keys?id=999"), 404)["code"] == "not_found"


@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_it_refuses_a_user_who_is_not_staff(other_user: Any, method: str) -> None:
    ApiKey.create(SECRET)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {Token.objects.create(user=other_user).key}")
    response = getattr(client, method)("/api/keys", {"key": "AIza-another-key"}, format="json")
    error = error_of(response, 403)
    assert "staff" in error["message"]
    assert ApiKey.objects.count() == 1


@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_it_refuses_a_request_without_a_token(db: Any, method: str) -> None:
    response = getattr(APIClient(), method)("/api/keys", {"key": SECRET}, format="json")
    assert error_of(response, 401)["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Bearer"
    assert not ApiKey.objects.exists()


def test_a_key_that_is_not_printable_ascii_is_refused(api: Any) -> None:
    # It would travel in an HTTP header to Gemini, where it can't be encoded: every generation failed.
    response = api.post("/api/keys", {"key": "AIza\u00e9t\u00e9"}, format="json")
    assert response.status_code == 400 and "printable ASCII" in response.json()["error"]["message"]


# --- credentials of every kind ------------------------------------------------------------------


def test_it_adds_a_vertex_express_key_behind_a_proxy_shown_without_its_password(api: Any) -> None:
    body = {"kind": "vertex_express", "key": "AQ.express-0123456789", "proxy": "socks5://bob:hunter2@10.0.0.9:1080"}
    response = api.post("/api/keys", body, format="json")
    assert response.status_code == 201, response.content
    data = response.json()["data"]
    assert (data["kind"], data["proxy"], data["location"]) == ("vertex_express", "socks5://bob@10.0.0.9:1080", "")
    assert "hunter2" not in response.content.decode() and "hunter2" not in api.get("/api/keys").content.decode()
    assert ApiKey.objects.get().proxy == body["proxy"]


def test_it_adds_a_service_account_from_its_json_key_with_its_project(api: Any, emu: Any) -> None:
    account = emu.vertex.service_account("proj-api")
    response = api.post(
        "/api/keys",
        {"kind": "vertex_service_account", "serviceAccount": account, "location": "europe-west4"},
        format="json",
    )
    assert response.status_code == 201, response.content
    data = response.json()["data"]
    assert data["key"] == account["client_email"]
    assert (data["project"], data["location"]) == ("proj-api", "europe-west4")
    assert account["private_key"].splitlines()[1] not in response.content.decode()
    # Its location is global unless given; the same JSON key again is the same credential.
    again = api.post("/api/keys", {"kind": "vertex_service_account", "key": json.dumps(account)}, format="json")
    assert "already in the pool" in error_of(again, 400)["message"]


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"kind": "vertex_service_account", "serviceAccount": {"type": "user"}}, "serviceAccount", "not a service"),
        ({"kind": "vertex_service_account", "key": "AIza-not-json"}, "key", "JSON file"),
        ({"serviceAccount": {"type": "service_account"}}, "kind", "vertex_service_account"),
        ({"kind": "vertex_express", "key": SECRET, "location": "us-central1"}, "location", "Only a service account"),
        ({"kind": "vertex_express", "key": SECRET, "proxy": "ftp://p.example:21"}, "proxy", "starts with"),
        ({"kind": "vertex_express", "key": SECRET, "proxy": "http://p.example"}, "proxy", "host and port"),
        ({"kind": "vertex", "key": SECRET}, "kind", "valid choice"),
    ],
)
def test_it_refuses_a_credential_that_cant_work_with_the_reason(
    api: Any, body: dict[str, Any], field: str, fragment: str
) -> None:
    error = error_of(api.post("/api/keys", body, format="json"), 400)
    assert error["details"]["field"] == field
    assert fragment.lower() in error["message"].lower()
    assert not ApiKey.objects.exists()
