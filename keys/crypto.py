"""Encryption at rest for Gemini API keys (Fernet, key from settings.KEY_ENCRYPTION_KEY)."""

from __future__ import annotations

import hashlib
from functools import cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


class WrongKey(Exception):
    """This host's NANOCLONE_KEY_ENCRYPTION_KEY can't decrypt the secrets already stored."""


@cache
def _fernet() -> Fernet:
    return Fernet(settings.KEY_ENCRYPTION_KEY.encode())


def encrypt(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def decrypt(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode()


def check_decrypts(token: str | None) -> None:
    """Raise WrongKey unless `token` (a secret already stored, if any) decrypts with this host's key:
    a host started with another key would run a pool it can't use."""
    if token is None:
        return
    try:
        decrypt(token)
    except InvalidToken as error:
        raise WrongKey(
            "NANOCLONE_KEY_ENCRYPTION_KEY can't decrypt the Gemini keys already stored in the database. "
            "Every host must use the key the first one made (kept in its "
            "$NANOCLONE_DATA_DIR/key_encryption_key): set NANOCLONE_KEY_ENCRYPTION_KEY to it here."
        ) from error


def fingerprint(secret: str) -> str:
    """A stable id for duplicate detection that reveals nothing about the key."""
    return hashlib.sha256(f"{settings.SECRET_KEY}:{secret}".encode()).hexdigest()


def mask(secret: str) -> str:
    """`AIza…x9Qk`: enough for an operator to tell keys apart, useless to anyone else."""
    if len(secret) <= 10:
        return "…" + secret[-2:]
    return f"{secret[:4]}…{secret[-4:]}"
