"""/metrics of a real `serve --workers 2` with its django-q2 cluster: the counts of every web worker
and every cluster worker add up, whichever web process answers the scrape."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import wait_until
from tests.nanoclone.test_serve import cluster_up, serve, stopped

pytestmark = pytest.mark.cluster


def images_counted(url: str, token: str) -> float:
    response = requests.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == "nanoclone_upstream_calls_total" and sample.labels["outcome"] == "image"
    )


def test_every_process_counts_into_one_scrape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NANOCLONE_METRICS", "1")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "counter_1.db").write_bytes(b"a dead run's counts")  # serve clears these
    with serve(tmp_path, "--workers", "2") as running:
        cluster_up(running)
        token = running.token()
        headers = {"Authorization": f"Bearer {token}"}
        for n in range(4):  # inline in whichever web worker takes the connection
            assert running.generate(f"a lighthouse {n}").status_code == 200
        queued = requests.post(f"{running.url}/api/images/generate", json={"prompt": "un phare"}, headers=headers)
        assert queued.status_code == 202, queued.text  # run by a django-q2 worker
        wait_until(lambda: images_counted(running.url, token) == 5, 60, "the queued job to be counted")
        # New connections land on either web process: each adds up the same files.
        assert {images_counted(running.url, token) for _ in range(8)} == {5}
        os.kill(running.process.pid, signal.SIGTERM)
        assert stopped(running, 30) == 0
    assert not (tmp_path / "metrics" / "counter_1.db").exists()
    assert len(list((tmp_path / "metrics").glob("counter_*.db"))) >= 2  # a web worker and a cluster worker
