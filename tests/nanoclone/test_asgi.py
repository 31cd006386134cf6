"""nanoclone.asgi as `serve` runs it: what its lifespan sets up in the server's process."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

from django.conf import settings

from nanoclone import asgi

# In a fresh interpreter, as serve's process starts: pytest's has long imported the views.
FRESH_START = """
import gc, json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nanoclone.settings")
from nanoclone import asgi
before = ("nanoclone.api.conversations" in sys.modules, gc.get_freeze_count())
asgi.tune_garbage_collector()
print(json.dumps([before, ("nanoclone.api.conversations" in sys.modules, gc.get_freeze_count())]))
"""


def test_the_server_loads_its_views_then_freezes_what_start_up_loaded() -> None:
    done = subprocess.run(
        [sys.executable, "-c", FRESH_START], cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    (views_before, frozen_before), (views_after, frozen_after) = json.loads(done.stdout.splitlines()[-1])
    assert (views_before, frozen_before) == (False, 0)
    assert views_after and frozen_after > 50_000  # the views were loaded first, so the freeze covers them


def test_the_lifespan_tunes_the_collector_once_per_process(live_app: str) -> None:
    frozen = gc.get_freeze_count()
    assert frozen > 0
    asgi.tune_garbage_collector()  # a second start does not freeze again what its tests left alive
    assert gc.get_freeze_count() <= frozen  # (frozen objects freed as references drop leave the count)
