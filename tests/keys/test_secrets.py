"""Credentials of every kind, and their proxies' passwords, are encrypted at rest, shown only masked,
never returned, never logged."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from keys.models import ApiKey
from tests.keys.conftest import ROOT
from tests.keys.proxies import tinyproxy

SECRETS_APP = Path(__file__).with_name("secrets_app.py")


@pytest.mark.django_db
def test_it_answers_with_the_masked_key_only(api: Any) -> None:
    secret = "AIzaSy" + secrets.token_hex(16)
    created = api.post("/api/keys", {"key": secret, "label": "team"}, format="json")
    listed = api.get("/api/keys")
    assert created.status_code == 201
    assert created.json()["data"]["key"] == f"AIza…{secret[-4:]}"
    assert secret[6:] not in created.content.decode()
    assert secret[6:] not in listed.content.decode()


@pytest.mark.django_db
def test_it_stores_the_key_encrypted_with_the_configured_encryption_key(settings: Any) -> None:
    secret = "AIzaSy" + secrets.token_hex(16)
    key = ApiKey.create(secret)
    row = ApiKey.objects.filter(pk=key.pk).values().get()
    assert all(secret[6:] not in str(value) for value in row.values())
    assert Fernet(settings.KEY_ENCRYPTION_KEY.encode()).decrypt(row["secret_encrypted"].encode()).decode() == secret


def test_it_keeps_secrets_of_every_kind_out_of_the_database_file_and_the_debug_log(tmp_path: Path, emu: Any) -> None:
    """API keys, a service account's private key and a proxy's password, through a real proxy."""
    data_dir, log_file = tmp_path / "data", tmp_path / "debug.log"
    keys = [f"emu-{kind}-{secrets.token_hex(16)}" for kind in ("ok", "429", "invalid", "500")]
    express = f"emu-ok-{secrets.token_hex(16)}"
    account = emu.vertex.service_account("proj-secret")
    # The private key's lines of base64, each long enough to be a leak if it is found anywhere.
    private_lines = [line for line in account["private_key"].splitlines() if len(line) >= 40]
    password = f"pw-{secrets.token_hex(12)}"
    env = {
        **{name: value for name, value in os.environ.items() if name != "DATABASE_URL"},  # a SQLite file
        "NANOCLONE_DATA_DIR": str(data_dir),
        "NANOCLONE_DEBUG": "true",  # Django logs every SQL statement with its parameters
        "NANOCLONE_LOG_LEVEL": "DEBUG",
        "NANOCLONE_UPSTREAM_BACKOFF": "0.01",
        "PYTHONPATH": str(ROOT),
    }
    stack = contextlib.ExitStack()
    proxy = stack.enter_context(tinyproxy(tmp_path, "ops", password))
    env["VERTEX_CREDENTIALS"] = json.dumps({"express": express, "serviceAccount": account, "proxy": proxy.url})
    with stack, log_file.open("w") as log:
        run = subprocess.run(
            [sys.executable, str(SECRETS_APP), emu.url, *keys],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            timeout=60,
        )
    log_text = log_file.read_text()
    assert run.returncode == 0, log_text[-3000:]
    answers = json.loads(run.stdout.strip().splitlines()[-1])
    # The key was really used, really failed, and all of it was logged.
    assert [(a["call"], a["status"]) for a in answers] == [
        ("POST /api/keys", 201),
        ("POST /api/generate", 200),
        ("POST /api/keys", 201),
        ("POST /api/keys", 201),
        ("POST /api/keys", 201),
        ("POST /api/generate", 502),
        ("POST /api/keys", 201),
        ("POST /api/generate", 200),
        ("POST /api/keys", 201),
        ("POST /api/generate", 200),
        ("GET /api/keys", 200),
    ]
    assert proxy.reached(emu.url.removeprefix("http://")) and "/token" in proxy.seen()
    assert "HTTP Request: POST" in log_text and "INSERT INTO" in log_text and "rests on key" in log_text
    files = sorted(path for path in data_dir.rglob("*") if path.is_file())
    assert data_dir / "nanoclone.sqlite3-wal" in files
    leaks = [
        str(where)
        for where, content in [
            *((path, path.read_bytes()) for path in files),
            (log_file, log_text.encode()),
            ("API answers", run.stdout.encode()),
        ]
        for secret in [*keys, express, *private_lines, password]
        if secret.encode() in content or secret[-32:].encode() in content
    ]
    assert leaks == []
