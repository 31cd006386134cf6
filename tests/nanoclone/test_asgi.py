"""nanoclone.asgi as `serve` runs it: what its lifespan sets up in the server's process."""

from __future__ import annotations

import gc
import sys

from nanoclone import asgi


def test_the_server_freezes_what_start_up_loaded(live_app: str) -> None:
    # The views were imported before the freeze, so full collections never walk them.
    assert "nanoclone.api.conversations" in sys.modules
    assert gc.get_freeze_count() > 50_000
    # Once per process: a second start does not freeze again what its tests left alive.
    frozen = gc.get_freeze_count()
    asgi.tune_garbage_collector()
    assert gc.get_freeze_count() == frozen
