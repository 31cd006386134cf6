"""/api/schema tells the truth: schemathesis fuzzes every documented door of a live `serve`.

`manage.py serve` runs as a subprocess (web and cluster) on a fresh data directory, its keys
pointing at the Gemini emulator over loopback, so generations really run. schemathesis (the real
CLI) sends at least 1,000 cases, valid and invalid, with a token the test gets from serve, and
checks every answer: no 5xx, the status documented, the body matching the documented schema.

Run with `-m schemathesis` (.ci/run does, as its own step); a plain `pytest` skips it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.conf import settings

from keys.gemini.emulator import GeminiEmulator
from tests.conftest import free_port, start_serve, stop_group, wait_until

pytestmark = pytest.mark.schemathesis

MIN_CASES = 1000
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


@pytest.fixture(scope="module")
def live(
    request: pytest.FixtureRequest, emulator: GeminiEmulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    if "schemathesis" not in (request.config.option.markexpr or ""):
        pytest.skip("a long fuzzing run: pytest -m schemathesis")
    data_dir = tmp_path_factory.mktemp("schemathesis")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NANOCLONE_", "DATABASE_URL", "WEBHOOK_"))}
    env.update(
        NANOCLONE_DATA_DIR=str(data_dir),
        PYTHONUNBUFFERED="1",
        # Every key reaches the emulator, the ones schemathesis adds too, and none runs out.
        NANOCLONE_GEMINI_BASE_URL=emulator.url,
        NANOCLONE_KEY_DAILY_LIMIT="1000000",
        NANOCLONE_Q_WORKERS="2",
    )
    port = free_port()
    serve, output = start_serve(["--host", "127.0.0.1", "--port", str(port)], env, settings.BASE_DIR)
    try:
        line = wait_until(lambda: next((x for x in output if "API token:" in x), None), 60, "serve to start")
        token = line.split("API token:")[1].strip()
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(url + "/health"), 30, "the web server")
        added = requests.post(
            url + "/api/keys", headers={"Authorization": f"Bearer {token}"}, json={"key": "emu-ok-fuzz"}, timeout=10
        )
        assert added.status_code == 201, added.text
        yield url, token
    finally:
        stop_group(serve)
        (data_dir / "serve.log").write_text("".join(output))


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def test_every_answer_of_every_door_matches_the_schema(live: tuple[str, str], tmp_path: Path) -> None:
    url, token = live
    # Deleting keys last, on its own: a generation after the fuzzer removed every key answers a
    # (documented, truthful) 503 no_usable_key, which is not what this run is about.
    everything_else = fuzz(url, token, tmp_path / "doors.json", "--exclude-operation-id", "api_keys_destroy")
    deleting_keys = fuzz(url, token, tmp_path / "delete.json", "--include-operation-id", "api_keys_destroy")
    cases = everything_else["cases"] + deleting_keys["cases"]
    print(f"schemathesis: {cases} cases, 5xx and schema violations: {everything_else} {deleting_keys}")
    assert cases >= MIN_CASES


def fuzz(url: str, token: str, report: Path, *selection: str) -> dict[str, int]:
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{url}/api/schema",
            "--url",
            url,
            "-H",
            f"Authorization: Bearer {token}",
            "--checks",
            CHECKS,
            "--max-examples",
            os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "40"),
            "--seed",
            os.environ.get("SCHEMATHESIS_SEED", "12"),
            # One worker: hypothesis parses lambdas' source with ast.parse, and on Python 3.11 before
            # 3.11.8 two threads doing so can fail with "AST constructor recursion depth mismatch".
            "--workers",
            "1",
            "--request-timeout",
            "60",
            "--no-color",
            "--report",
            "json",
            "--report-json-path",
            str(report),
            *selection,
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    print(run.stdout[-6000:])
    figures = summary(run.stdout)
    assert run.returncode == 0 and figures["failures"] == 0, run.stdout[-12000:] + run.stderr[-2000:]
    return figures


def summary(output: str) -> dict[str, int]:
    """The figures schemathesis prints at the end: cases generated, and how many failed."""
    cases = re.search(r"Test cases:\s*([\d,]+) generated", output)
    failures = re.search(r"found (\d+) unique failures", output)
    return {
        "cases": int(cases.group(1).replace(",", "")) if cases else 0,
        "failures": int(failures.group(1)) if failures else 0,
    }


def test_the_summary_reads_schemathesis_figures() -> None:
    printed = "Test cases:\n  1,234 generated, 1,234 passed\n"
    assert summary(printed) == {"cases": 1234, "failures": 0}
    assert json.dumps(summary("")) == '{"cases": 0, "failures": 0}'
