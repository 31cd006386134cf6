"""The google-genai client cache: one client per key, even when a job's images start together."""

from __future__ import annotations

import threading
from typing import Any

from keys.gemini import client as gemini
from keys.pool import Lease


def test_it_gives_concurrent_image_threads_one_shared_client(emulator: Any) -> None:
    # A second client built in a race would be garbage-collected, and google-genai's
    # Client.__del__ closes the HTTP connections a request in flight is using.
    gemini._client.cache_clear()
    lease = Lease(key_id=1, masked="emu-…0001", base_url=emulator.url, secret="emu-ok-race")
    start = threading.Barrier(8)
    clients: list[Any] = []

    def take() -> None:
        start.wait()
        clients.append(gemini._client_for(lease))

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(client) for client in clients}) == 1
