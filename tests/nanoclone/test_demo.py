"""`serve --demo`: its emulator keeps one port across restarts, and keys added while it runs (on the
keys page or with POST /api/keys, without a base URL) reach that emulator."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
import requests

from tests.nanoclone.test_serve import serve, stopped

pytestmark = pytest.mark.cluster


def emulator_url(text: str) -> str:
    return str(re.search(r"offline Gemini emulator at (http://\S+)", text).group(1))  # type: ignore[union-attr]


def test_keys_added_in_demo_mode_reach_the_emulator_which_keeps_its_port(tmp_path: Path) -> None:
    with serve(tmp_path, "--no-cluster") as first:
        headers = {"Authorization": f"Bearer {first.token()}"}
        demo = requests.get(f"{first.url}/api/keys", headers=headers, timeout=10).json()["data"]
        added = requests.post(f"{first.url}/api/keys", json={"key": "AIzaMyOwnKey0001"}, headers=headers, timeout=10)
        assert added.status_code == 201
        for key in demo:  # only the key just added is left to serve
            requests.delete(f"{first.url}/api/keys?id={key['id']}", headers=headers, timeout=10)
        answer = requests.post(f"{first.url}/api/generate", json={"prompt": "a fox"}, headers=headers, timeout=60)
        assert answer.status_code == 200, answer.text
        emulator_log = requests.get(f"{emulator_url(first.text)}/emulator/requests", timeout=10).json()
        assert [r["key_suffix"] for r in emulator_log["requests"]] == ["0001"]
        os.kill(first.process.pid, signal.SIGTERM)
        assert stopped(first, 30) == 0
    with serve(tmp_path, "--no-cluster") as again:
        os.kill(again.process.pid, signal.SIGTERM)
        assert stopped(again, 30) == 0
    assert emulator_url(again.text) == emulator_url(first.text)
