"""The ASGI entry point `serve` runs: a small dispatcher in front of Django.

Django runs as a WSGI app in a thread pool (a2wsgi's, nanoclone.wsgi_threads): Django's own ASGI
handler would run every sync view on one shared thread, and generation requests spend seconds
waiting on Gemini, so they need real threads to overlap.

/mcp is the MCP server's streamable HTTP transport (nanoclone.mcp.transport), which needs the
ASGI lifespan: its session manager runs from startup to shutdown.
"""

from __future__ import annotations

import gc
import io
import os
import threading
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from importlib import import_module
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nanoclone.settings")

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from nanoclone.wsgi_threads import ThreadedWSGI

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


class DjangoRequests:
    """Django as `serve` runs it: chunked bodies read whole, and the requests still running counted.

    Django (and DRF after it) reads exactly CONTENT_LENGTH bytes of a body, so a request sent with
    `Transfer-Encoding: chunked` and no Content-Length reads as empty in every door. uvicorn has
    undone the chunking and a2wsgi's input ends where the body ends, so the body is read here, up
    to NANOCLONE_MAX_REQUEST_BYTES, and announced with its length. Over the cap only cap + 1 bytes
    are read and announced: each door then answers its own 413, as for a too large Content-Length.

    The count tells `serve` whether a request outlived the shutdown grace (see serve.py).
    """

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self.running = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if "CONTENT_LENGTH" not in environ and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            body = environ["wsgi.input"].read(-1 if limit is None else limit + 1)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        with self._lock:
            self.running += 1
        try:
            return self.app(environ, start_response)
        finally:
            with self._lock:
                self.running -= 1


django_requests = DjangoRequests(get_wsgi_application())
django_app = ThreadedWSGI(django_requests, workers=settings.WEB_THREADS)  # type: ignore[arg-type]

# Imports models, so only after get_wsgi_application() has set Django up.
from nanoclone.mcp import transport as mcp  # noqa: E402

_collector_tuned = False


def tune_garbage_collector() -> None:
    """Once per server process, as it starts: what start-up loaded moves out of the collector's way.

    Django's request is a reference cycle (its view, request.htmx and request._messages point back
    at it), so each request's objects wait for the cyclic garbage collector. A generation's objects
    live a second or more while it waits on Gemini, so under load they outlive young collections
    and reach the oldest generation, which only a full collection frees, walking the 200,000
    objects start-up loaded too. gc.freeze() sets those aside for good: measured with gc.callbacks
    under bench/concurrency.py, the collector's CPU per image went from 0.92 to 0.5 ms at 32 clients
    and from 1.1 to 0.65 ms at 128, the longest collection from 212 to 143 ms. Fewer young
    collections (a higher gc threshold) saved more CPU but held 100 MiB more at 128 in flight: the
    requests' garbage then waits longer for a full collection.
    """
    global _collector_tuned
    if _collector_tuned:
        return
    _collector_tuned = True
    import_module(settings.ROOT_URLCONF)  # the views and what they import, loaded now so the freeze covers them
    gc.collect()
    gc.freeze()


async def lifespan(receive: Any, send: Any) -> None:
    await receive()  # lifespan.startup
    tune_garbage_collector()
    async with AsyncExitStack() as running:
        try:
            await running.enter_async_context(mcp.http_transport.running())
        except Exception as error:  # the server must not start half-working: report and stop
            await send({"type": "lifespan.startup.failed", "message": f"MCP server did not start: {error}"})
            return
        await send({"type": "lifespan.startup.complete"})
        while (await receive())["type"] != "lifespan.shutdown":
            pass
    await send({"type": "lifespan.shutdown.complete"})


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    elif scope["type"] == "http" and mcp.is_mcp_path(scope["path"]):
        await mcp.http_transport(scope, receive, send)
    else:
        await django_app(scope, receive, send)
