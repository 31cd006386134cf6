"""The emulator's quotas, chosen by the API key: what a key may spend, per project and model as
Gemini's quotas are, and the 429 it gets once spent."""

from __future__ import annotations

import re
import threading
import time

from keys.catalogue import model_for_size
from keys.gemini.emulator.errors import PER_DAY, PER_MINUTE, GeminiError, quota_exhausted

_QUOTA_KEY = re.compile(r"^emu-quota(\d+)-")
_RPM_KEY = re.compile(r"^emu-rpm(\d+)-")
_PROJECT_PART = re.compile(r"-p([A-Za-z0-9]+)-")


class Quotas:
    """What each project (or key) has spent of each model's quota, for the server's lifetime."""

    def __init__(self, minute_seconds: float = 60.0) -> None:
        # The length of an `emu-rpm<N>-*` window: tests shorten Gemini's minute.
        self.minute_seconds = minute_seconds
        self._lock = threading.Lock()
        # Requests per (project, model), and per (project, model, window) for per-minute keys.
        self._used: dict[tuple[str, ...], int] = {}

    def spend(self, key: str, model: str, project: str | None = None) -> GeminiError | None:
        """The 429 a key's quota gives for this request, or None (then the request is counted).

        Quotas are per project and model, as Gemini's: keys with the same `-p<ID>-` part share them,
        and so do a project's service accounts (`project`: the one in a Vertex AI path).
        """
        if key.startswith("emu-429bare-"):
            return GeminiError(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).")
        if key.startswith("emu-429-"):
            return quota_exhausted(model, 500)  # a per-day quota spent
        if key.startswith("emu-free-") and not model_for_size(model).free_tier:
            return quota_exhausted(model, 0)  # Pro has no free tier: limit 0
        project_part = _PROJECT_PART.search(key)
        if project is not None:
            project = f"project {project}"
        else:
            project = f"project {project_part.group(1)}" if project_part else f"key {key}"
        if match := _RPM_KEY.match(key):
            now = time.time()
            window = int(now // self.minute_seconds)
            rest = (window + 1) * self.minute_seconds - now
            return self._count(
                (project, model, str(window)), int(match.group(1)), model, PER_MINUTE, round(rest + 0.05, 1)
            )
        if match := _QUOTA_KEY.match(key):
            return self._count((project, model), int(match.group(1)), model, PER_DAY, 38.0)
        return None

    def _count(
        self, counter: tuple[str, ...], limit: int, model: str, quota_id: str, retry_seconds: float
    ) -> GeminiError | None:
        with self._lock:
            used = self._used.get(counter, 0)
            if used >= limit:
                return quota_exhausted(model, limit, quota_id, retry_seconds)
            self._used[counter] = used + 1
        return None
