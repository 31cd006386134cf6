"""What an operator pastes into the pool, read and checked once: an API key (AI Studio's or Vertex
AI's express mode), a Vertex AI service account's JSON key, and the proxy a credential calls through.

keys.models.ApiKey stores the secret and the proxy URL encrypted, and only what this module says
may be shown: a masked key, a service account's email, a proxy without its password.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
# What a service account's JSON key must hold for google-auth to sign in with it.
_SERVICE_ACCOUNT_FIELDS = ("project_id", "private_key_id", "private_key", "client_email", "token_uri")


class CredentialError(ValueError):
    """What is wrong with a pasted credential or proxy, in words the operator can act on."""


@dataclass(frozen=True)
class ServiceAccount:
    info: dict[str, Any]  # the JSON key, as google-auth's from_service_account_info takes it

    @property
    def email(self) -> str:
        return str(self.info["client_email"])

    @property
    def project(self) -> str:
        return str(self.info["project_id"])

    @property
    def identity(self) -> str:
        """The same JSON key, however it was formatted: its account and key id."""
        return f"{self.email}/{self.info['private_key_id']}"


def service_account(text: str) -> ServiceAccount:
    """A Vertex AI service account's JSON key, checked for what signing in needs."""
    try:
        info = json.loads(text)
    except json.JSONDecodeError as error:
        raise CredentialError(
            "A service account key is the JSON file Google Cloud downloads (IAM, Service accounts, Keys)."
        ) from error
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise CredentialError('This JSON is not a service account key (its "type" must be "service_account").')
    if missing := [field for field in _SERVICE_ACCOUNT_FIELDS if not str(info.get(field) or "").strip()]:
        raise CredentialError(f"The service account key lacks {', '.join(missing)}.")
    if not str(info["private_key"]).lstrip().startswith("-----BEGIN"):
        raise CredentialError("The service account key's private_key is not a PEM private key.")
    return ServiceAccount(info)


@dataclass(frozen=True)
class Proxy:
    url: str  # with its password: kept encrypted
    shown: str  # without it

    @property
    def route(self) -> str:
        """Where calls leave from: the proxy's scheme, host and port."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}:{parts.port}"


def proxy(url: str) -> Proxy | None:
    """An HTTP proxy (https targets go through it with CONNECT) or a SOCKS5 proxy, with an optional
    user and password: `http://user:password@host:3128`, `socks5://user:password@host:1080`
    (`socks5h`: the proxy resolves Google's names). None for an empty URL."""
    url = url.strip()
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in PROXY_SCHEMES:
        raise CredentialError(f"A proxy URL starts with {', '.join(s + '://' for s in PROXY_SCHEMES)}.")
    try:
        port = parts.port
    except ValueError as error:
        raise CredentialError("The proxy's port is not a number between 1 and 65535.") from error
    if not parts.hostname or port is None:
        raise CredentialError("A proxy URL names its host and port, e.g. http://proxy.example:3128.")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise CredentialError("A proxy URL has no path: scheme://[user:password@]host:port.")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    user = f"{parts.username}@" if parts.username else ""
    return Proxy(url, urlunsplit((parts.scheme, f"{user}{host}:{port}", "", "", "")))
