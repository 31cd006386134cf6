"""API authentication: `Authorization: Bearer <token>` and `Token <token>` both work."""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, TokenAuthentication, get_authorization_header
from rest_framework.authtoken.models import Token
from rest_framework.request import Request

KEYWORDS = (b"bearer", b"token")
# A token's row (with its user) is kept this long in the process's cache, so a request pays no query
# for it. Deleting or rotating a token, or saving its user, forgets it at once in this process;
# other processes (several web workers, `manage.py api_token`) are heard within this time.
TOKEN_CACHE_SECONDS = 5.0


def _cache_key(key: str) -> str:
    return "api-token:" + hashlib.sha256(key.encode()).hexdigest()  # the token itself is no cache key


def token_of(key: str) -> Token | None:
    """The token `key` with its user, or None (an unknown key is not cached: a new token works at once)."""
    token: Token | None = cache.get(_cache_key(key))
    if token is None:
        token = Token.objects.select_related("user").filter(key=key).first()
        if token is not None:
            cache.set(_cache_key(key), token, TOKEN_CACHE_SECONDS)
    return token


@receiver([post_save, post_delete], sender=Token, dispatch_uid="api-token-forget")
def _forget_token(sender: Any, instance: Token, **kwargs: Any) -> None:
    cache.delete(_cache_key(instance.key))


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="api-token-forget-user")
def _forget_tokens_of(sender: Any, instance: Any, **kwargs: Any) -> None:
    cache.delete_many([_cache_key(key) for key in Token.objects.filter(user=instance).values_list("key", flat=True)])


class BearerTokenAuthentication(TokenAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, Token] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in KEYWORDS:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Invalid Authorization header: expected 'Bearer <token>'.")
        try:
            token = parts[1].decode()
        except UnicodeError as error:
            raise exceptions.AuthenticationFailed("Invalid token.") from error
        return self.authenticate_credentials(token)

    invalid_message = "Invalid token."

    def authenticate_credentials(self, key: str) -> tuple[Any, Token]:
        token = token_of(key)
        if token is None:
            raise exceptions.AuthenticationFailed(self.invalid_message)
        if not token.user.is_active:
            raise self.disabled()
        return token.user, token

    def disabled(self) -> exceptions.APIException:
        """What a disabled account's token gets."""
        return exceptions.AuthenticationFailed("User inactive or deleted.")

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"


def user_for_token(token: str) -> Any | None:
    """The active user a token belongs to (MCP over HTTP uses the same tokens)."""
    found = token_of(token)
    return found.user if found and found.user.is_active else None


class OpenAPIAuthentication(BaseAuthentication):
    """NANOCLONE_OPEN_API=true: single-user localhost mode, requests act as the first superuser."""

    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        if not settings.OPEN_API:
            return None
        user = get_user_model().objects.filter(is_superuser=True, is_active=True).order_by("pk").first()
        return (user, None) if user else None


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Documents the token as `Authorization: Bearer <token>` (`Token <token>` works too)."""

    target_class = BearerTokenAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A token from `python manage.py api_token <username>`; `Token <token>` is accepted too.",
        }


class OpenAPIScheme(OpenApiAuthenticationExtension):
    """NANOCLONE_OPEN_API is a deployment switch, not a way clients authenticate: nothing to document."""

    target_class = OpenAPIAuthentication
    name: list[str] = []

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[Any]]]:
        return []

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, Any]]:
        return []
