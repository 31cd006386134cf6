"""Shared fixtures: a real Gemini emulator on loopback, users, tokens and key pools."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from typing import Any

import PIL.Image
import pytest
import requests
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from keys.models import ApiKey
from nanoclone.emulator import GeminiEmulator


@pytest.fixture(autouse=True)
def _media_in_tmp(settings: Any, tmp_path: Any) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.UPSTREAM_BACKOFF_SECONDS = 0.01
    # PBKDF2's deliberate slowness (~0.25 s a password) would dominate the run; tests need no strength.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def inline_tasks(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """django-q2 runs each task in the calling process as soon as it is queued (sync mode).

    django-q2 reads Conf.SYNC from Q_CLUSTER once, at import, so the setting alone is too late.
    """
    from django_q.conf import Conf

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture(scope="session")
def emulator() -> Iterator[GeminiEmulator]:
    with GeminiEmulator() as running:
        yield running


@pytest.fixture
def emu(emulator: GeminiEmulator) -> GeminiEmulator:
    """The session's emulator, with its request log cleared and no added latency."""
    emulator.clear()
    emulator.latency_ms = 0
    return emulator


def emulator_requests(emulator: GeminiEmulator) -> list[dict[str, Any]]:
    """What the emulator received, read over HTTP as any client would."""
    return requests.get(f"{emulator.url}/emulator/requests", timeout=5).json()["requests"]


@pytest.fixture
def add_key(emu: GeminiEmulator) -> Callable[..., ApiKey]:
    def add(secret: str = "emu-ok-0001", **fields: Any) -> ApiKey:
        fields.setdefault("base_url", emu.url)
        return ApiKey.create(secret, **fields)

    return add


@pytest.fixture
def user(db: Any) -> Any:
    return get_user_model().objects.create_user("alice", password="pw-alice-123", is_staff=True)


@pytest.fixture
def other_user(db: Any) -> Any:
    return get_user_model().objects.create_user("bob", password="pw-bob-123")


@pytest.fixture
def api(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {Token.objects.create(user=user).key}")
    return client


def png_bytes(
    size: tuple[int, int] = (64, 48), colour: tuple[int, int, int] = (200, 30, 30), fmt: str = "PNG"
) -> bytes:
    out = io.BytesIO()
    PIL.Image.new("RGB", size, colour).save(out, fmt)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
