"""The google-genai client cache (one client per key, even when a job's images start together) and the
call's configuration."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from google.genai import types

from keys.gemini import client as gemini
from keys.pool import Lease
from tests.conftest import emulator_requests


def test_it_gives_concurrent_image_threads_one_shared_client(emulator: Any) -> None:
    # A second client built in a race would be garbage-collected, and google-genai's
    # Client.__del__ closes the HTTP connections a request in flight is using.
    gemini._connect.cache_clear()
    lease = Lease(key_id=1, masked="emu-…0001", base_url=emulator.url, secret="emu-ok-race")
    start = threading.Barrier(8)
    clients: list[Any] = []

    def take() -> None:
        start.wait()
        clients.append(gemini._connection(lease).client)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(client) for client in clients}) == 1


def test_a_call_sends_the_options_without_the_sdk_copying_its_config(
    emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    copies: list[dict[str, Any]] = []
    copy = types.GenerateContentConfig.model_copy

    def counted_copy(self: types.GenerateContentConfig, **options: Any) -> types.GenerateContentConfig:
        copies.append(options)
        return copy(self, **options)

    monkeypatch.setattr(types.GenerateContentConfig, "model_copy", counted_copy)
    lease = Lease(key_id=1, masked="emu-…0001", base_url=emulator.url, secret="emu-ok-config")
    answer = gemini.generate(
        lease, "gemini-2.5-flash-image", [gemini.Turn("user", "a cat")], gemini.Options(aspect_ratio="16:9")
    )
    assert answer.images
    assert not [options for options in copies if options.get("deep")]  # the automatic function calling loop's copy
    sent = emulator_requests(emulator)[-1]["generation_config"]
    assert sent == {"responseModalities": ["TEXT", "IMAGE"], "imageConfig": {"aspectRatio": "16:9"}}
