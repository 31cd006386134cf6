"""Who may call the native API: tokens (Bearer or Token), sessions, the open single-user mode; and api_token."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from conversations.models import Conversation

pytestmark = pytest.mark.django_db


def conversations(**headers: str) -> Any:
    return APIClient().get("/api/conversations", headers=headers)


@pytest.mark.parametrize("keyword", ["Bearer", "Token", "bearer"])
def test_it_accepts_the_token_with_either_keyword(user: Any, keyword: str) -> None:
    token = Token.objects.create(user=user).key
    response = conversations(Authorization=f"{keyword} {token}")
    assert response.status_code == 200 and response.json()["success"] is True


@pytest.mark.parametrize("header", ["Bearer not-a-real-token", "Bearer", "Bearer two parts", "Basic YWxpY2U6cHc="])
def test_it_refuses_a_wrong_or_malformed_token_with_401(user: Any, header: str) -> None:
    response = conversations(Authorization=header)
    assert response.status_code == 401
    body = response.json()
    assert body["success"] is False and body["data"] is None and body["error"]["message"]
    assert response["WWW-Authenticate"] == "Bearer"


def test_it_refuses_the_token_of_an_inactive_user(user: Any) -> None:
    token = Token.objects.create(user=user).key
    user.is_active = False
    user.save()
    assert conversations(Authorization=f"Bearer {token}").status_code == 401


def test_a_token_used_once_is_refused_at_once_when_deleted_rotated_or_its_user_disabled(user: Any) -> None:
    """GIVEN a token that just worked (its row is cached for a few seconds) WHEN it is deleted, its
    user rotates it (api_token) or is disabled THEN the very next request with it is refused."""
    deleted = Token.objects.create(user=user)
    assert conversations(Authorization=f"Bearer {deleted.key}").status_code == 200
    deleted.delete()
    assert conversations(Authorization=f"Bearer {deleted.key}").status_code == 401

    rotated = Token.objects.create(user=user).key
    assert conversations(Authorization=f"Bearer {rotated}").status_code == 200
    call_command("api_token", "alice", stdout=io.StringIO())
    assert conversations(Authorization=f"Bearer {rotated}").status_code == 401
    fresh = Token.objects.get(user=user).key
    assert conversations(Authorization=f"Bearer {fresh}").status_code == 200

    user.is_active = False
    user.save()
    assert conversations(Authorization=f"Bearer {fresh}").status_code == 401


def test_it_accepts_a_logged_in_session(user: Any) -> None:
    client = Client()
    assert client.login(username="alice", password="pw-alice-123")
    response = client.get("/api/conversations")
    assert response.status_code == 200 and response.json()["success"] is True


def test_it_wants_the_csrf_token_when_a_session_posts(user: Any) -> None:
    client = APIClient(enforce_csrf_checks=True)
    client.login(username="alice", password="pw-alice-123")
    response = client.post("/api/generate", {"prompt": "a cat"}, format="json")
    assert response.status_code == 403 and "CSRF" in response.json()["error"]["message"]


def test_it_refuses_an_anonymous_request_by_default(user: Any) -> None:
    response = conversations()
    assert response.status_code == 401 and response.json()["error"]["code"] == "not_authenticated"


def test_it_lets_an_anonymous_request_act_as_the_first_superuser_in_open_mode(settings: Any, user: Any) -> None:
    settings.OPEN_API = True
    admin = get_user_model().objects.create_superuser("root", password="pw-root-123")
    get_user_model().objects.create_superuser("root2", password="pw-root-123")
    Conversation.objects.create(user=admin, title="the admin's")
    Conversation.objects.create(user=user, title="alice's")
    [listed] = conversations().json()["data"]["results"]
    assert listed["title"] == "the admin's"
    # Staff-only endpoints open too: the request runs as that superuser.
    assert APIClient().post("/api/keys", {"key": "AIza-open-mode-key-0001"}, format="json").status_code == 201


def test_it_stays_closed_in_open_mode_without_a_superuser(settings: Any, user: Any) -> None:
    settings.OPEN_API = True
    assert conversations().status_code == 401


def test_it_answers_health_without_auth(db: Any) -> None:
    response = Client().get("/health")
    assert response.status_code == 200 and response.json()["checks"]["database"] == "ok"


# --- python manage.py api_token <username> -------------------------------------------------------


def api_token(username: str) -> list[str]:
    out = io.StringIO()
    call_command("api_token", username, stdout=out)
    return out.getvalue().splitlines()


def test_it_creates_a_token_and_prints_it_alone_on_the_last_line(user: Any) -> None:
    lines = api_token("alice")
    token = lines[-1]
    assert token == Token.objects.get(user=user).key and " " not in token
    assert conversations(Authorization=f"Bearer {token}").status_code == 200


def test_it_rotates_the_token_and_the_old_one_stops_working(user: Any) -> None:
    old = api_token("alice")[-1]
    new = api_token("alice")[-1]
    assert new != old
    assert conversations(Authorization=f"Bearer {old}").status_code == 401
    assert conversations(Authorization=f"Token {new}").status_code == 200


def test_it_refuses_an_unknown_user(db: Any) -> None:
    with pytest.raises(CommandError, match="nobody"):
        api_token("nobody")


def test_it_answers_an_unexpected_error_in_the_envelope_with_a_500(caplog: Any) -> None:
    from nanoclone.api.envelope import envelope_exception_handler

    response = envelope_exception_handler(RuntimeError("boom"), {"view": "GenerateView"})
    assert response is not None and response.status_code == 500
    assert response.data == {
        "success": False,
        "data": None,
        "error": {"code": "internal", "message": "NanoClone hit an internal error; it has been logged."},
    }
    assert "boom" in caplog.text
