"""The jobs API speaks its document's language: every error it answers is French, DRF's included."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from conversations.models import Job


def refused(response: Any, status: int) -> str:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["detail"] == body["message"]
    return str(body["message"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"prompt": 42}, "Chaîne de caractères attendue, reçu : int"),
        ({"prompt": "x", "input_image_url": ["a", "b"]}, "Chaîne de caractères attendue, reçu : list"),
        ({"prompt": "x", "size": None}, "Ce champ ne peut être nul."),
        ({"prompt": "x" * (settings.MAX_PROMPT_CHARS + 1)}, "Assurez-vous que ce champ comporte au plus"),
        (["un phare"], "Donnée non valide. Attendait un dictionnaire, a reçu list."),
    ],
)
def test_it_says_what_is_wrong_with_a_request_in_french(api: APIClient, body: Any, message: str) -> None:
    assert refused(api.post("/api/images/generate", body, format="json"), 400).startswith(message)
    assert not Job.objects.exists()


def test_it_refuses_a_body_that_is_not_json_in_french(api: APIClient) -> None:
    response = api.post("/api/images/generate", b"{prompt:", content_type="application/json")
    assert refused(response, 400) == "Le corps de la requête n'est pas du JSON valide"


def test_it_asks_for_a_token_in_french(db: Any) -> None:
    response = APIClient().post("/api/images/generate", {"prompt": "x"}, format="json")
    assert refused(response, 401) == "Informations d'authentification non fournies."
    wrong = APIClient().get("/api/images/status/img_x", headers={"Authorization": "Bearer nope"})
    assert refused(wrong, 401).startswith("Jeton d'API invalide")
    assert wrong["WWW-Authenticate"] == "Bearer"


def test_it_refuses_a_wrong_method_in_french(api: APIClient) -> None:
    response = api.get("/api/images/generate")
    assert refused(response, 405) == "Méthode «\xa0GET\xa0» non autorisée."  # DRF's French typography
    assert "POST" in response["Allow"]
