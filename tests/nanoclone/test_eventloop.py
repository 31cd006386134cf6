"""The web workers' board of connection counts (nanoclone/eventloop.py); the share-out itself is
tested on a real `serve --workers 2` in test_serve.py."""

from __future__ import annotations

import time
from pathlib import Path

from nanoclone.eventloop import STALE_SECONDS, Board


def test_a_worker_reads_the_fewest_connections_of_the_others_that_are_alive(tmp_path: Path) -> None:
    mine, busy, idle = (Board(tmp_path, name) for name in ("101", "102", "103"))
    assert mine.fewest_elsewhere() is None  # alone: nobody to leave a connection to
    mine.publish(0)
    busy.publish(12)
    assert mine.fewest_elsewhere() == 12
    idle.publish(3)
    assert mine.fewest_elsewhere() == 3
    busy.publish(2)  # a shorter line over a longer one
    assert busy.fewest_elsewhere() == 0 and mine.fewest_elsewhere() == 2
    # A worker that stopped or hangs says nothing new: it is not waited for.
    (tmp_path / "102").write_text(f"0 {time.monotonic() - STALE_SECONDS - 1:.3f}\n")
    assert mine.fewest_elsewhere() == 3
    idle.close()  # a worker that ends takes its line with it
    assert mine.fewest_elsewhere() is None and not (tmp_path / "103").exists()
