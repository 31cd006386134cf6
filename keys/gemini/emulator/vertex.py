"""Vertex AI's side of the emulator: its paths, the service accounts it knows, and the OAuth token
endpoint a service account's JSON key names as its `token_uri`.

A test makes a service account with `emulator.vertex.service_account(project)`: a JSON key like the
one Google Cloud downloads, with a fresh RSA key. google-auth signs a JWT with it and posts it to
`/token`; the endpoint checks the signature, the audience and the expiry as Google's does, and
hands out an access token that Vertex AI's paths then take as `Authorization: Bearer`.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import exceptions as auth_exceptions
from google.auth import jwt

from keys.gemini.emulator.errors import GeminiError

# /v1beta1/publishers/google/models/{m}:generateContent (express-mode keys), and the same under
# /v1beta1/projects/{p}/locations/{l}/ (service accounts); without the method, models.get.
PATH = re.compile(
    r"^/(v1|v1beta1)/(?:projects/([^/]+)/locations/([^/]+)/)?publishers/google/models/([^/:]+)(?::(generateContent))?$"
)
# The audience a service account's JWT names, whatever token_uri it is posted to: Google's endpoint.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
# What Vertex AI says when the capacity its customers share for a model is busy (no details).
BUSY = GeminiError(
    429,
    "RESOURCE_EXHAUSTED",
    "Resource exhausted. Please try again later. Please refer to "
    "https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.",
)
UNAUTHENTICATED = GeminiError(
    401,
    "UNAUTHENTICATED",
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid "
    "authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
)


@dataclass
class Account:
    email: str
    project: str
    key_id: str
    public_key: str  # PEM
    disabled: bool = False

    @property
    def name(self) -> str:
        """The email's first part: the emulator's behaviours read it as they read a key (emu-denied-...)."""
        return self.email.split("@")[0]


class Vertex:
    """The service accounts and access tokens of one emulator."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.token_seconds = 3600  # what an access token lives, as Google's
        self._lock = threading.Lock()
        self._accounts: dict[str, Account] = {}
        self._tokens: dict[str, tuple[Account, float]] = {}  # token: (account, expiry)
        self.tokens_issued = 0

    def service_account(self, project: str, name: str = "") -> dict[str, Any]:
        """A new service account of `project` and its JSON key (what Google Cloud downloads)."""
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        public = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        email = f"{name or 'nanoclone'}-{secrets.token_hex(3)}@{project}.iam.gserviceaccount.com"
        account = Account(email, project, secrets.token_hex(20), public.decode())
        with self._lock:
            self._accounts[email] = account
        return {
            "type": "service_account",
            "project_id": project,
            "private_key_id": account.key_id,
            "private_key": pem,
            "client_email": email,
            "client_id": str(secrets.randbelow(10**20)),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": f"{self.base_url}/token",
            "universe_domain": "googleapis.com",
        }

    def disable(self, email: str) -> None:
        """As an operator disabling (or deleting) the account in Google Cloud: no new tokens."""
        with self._lock:
            self._accounts[email].disabled = True

    def expire_tokens(self) -> None:
        """Every access token handed out stops working now, whatever its holder believes."""
        with self._lock:
            self._tokens.clear()

    def token(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        """The token endpoint: a JWT bearer assertion in, an access token out (RFC 7523)."""
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"] or not form.get("assertion"):
            return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type."}
        assertion = form["assertion"][0]
        try:
            claims = jwt.decode(assertion, verify=False)
        except (ValueError, auth_exceptions.GoogleAuthError):
            return 400, {
                "error": "invalid_grant",
                "error_description": "Invalid JWT: Token must be a short-lived token.",
            }
        with self._lock:
            account = self._accounts.get(str(claims.get("iss", "")))
        if account is None or account.disabled:
            return 400, {"error": "invalid_grant", "error_description": "Invalid grant: account not found"}
        try:
            jwt.decode(assertion, certs={account.key_id: account.public_key}, audience=GOOGLE_TOKEN_AUDIENCE)
        except (ValueError, auth_exceptions.GoogleAuthError):
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        if "https://www.googleapis.com/auth/cloud-platform" not in str(claims.get("scope", "")).split():
            return 400, {"error": "invalid_scope", "error_description": "Invalid OAuth scope or ID token audience."}
        token = f"emu-ya29.{secrets.token_urlsafe(24)}"
        with self._lock:
            self._tokens[token] = (account, time.time() + self.token_seconds)
            self.tokens_issued += 1
        return 200, {"access_token": token, "expires_in": self.token_seconds, "token_type": "Bearer"}

    def caller(self, authorization: str | None, project: str) -> Account:
        """The service account a bearer token stands for, allowed into `project` (raises GeminiError)."""
        token = (authorization or "").removeprefix("Bearer ").strip()
        with self._lock:
            account, expiry = self._tokens.get(token, (None, 0.0))
        if account is None or expiry <= time.time():
            raise UNAUTHENTICATED
        if account.project != project:
            raise GeminiError(
                403,
                "PERMISSION_DENIED",
                f"Permission 'aiplatform.endpoints.predict' denied on resource "
                f"'//aiplatform.googleapis.com/projects/{project}' (or it may not exist).",
            )
        return account
