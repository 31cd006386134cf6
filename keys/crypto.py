"""Encryption at rest for Gemini API keys (Fernet, key from settings.KEY_ENCRYPTION_KEY)."""

from __future__ import annotations

import hashlib
from functools import cache

from cryptography.fernet import Fernet
from django.conf import settings


@cache
def _fernet() -> Fernet:
    return Fernet(settings.KEY_ENCRYPTION_KEY.encode())


def encrypt(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def decrypt(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode()


def fingerprint(secret: str) -> str:
    """A stable id for duplicate detection that reveals nothing about the key."""
    return hashlib.sha256(f"{settings.SECRET_KEY}:{secret}".encode()).hexdigest()


def mask(secret: str) -> str:
    """`AIza…x9Qk`: enough for an operator to tell keys apart, useless to anyone else."""
    if len(secret) <= 10:
        return "…" + secret[-2:]
    return f"{secret[:4]}…{secret[-4:]}"
