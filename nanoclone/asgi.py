"""The ASGI entry point `serve` runs: a small dispatcher in front of Django.

Django runs as a WSGI app in a thread pool (a2wsgi): Django's own ASGI handler would run
every sync view on one shared thread, and generation requests spend seconds waiting on
Gemini, so they need real threads to overlap.

/mcp is the MCP server's streamable HTTP transport (nanoclone.mcp.transport), which needs the
ASGI lifespan: its session manager runs from startup to shutdown.
"""

from __future__ import annotations

import os
from contextlib import AsyncExitStack
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nanoclone.settings")

from a2wsgi import WSGIMiddleware
from django.conf import settings
from django.core.wsgi import get_wsgi_application

django_app = WSGIMiddleware(get_wsgi_application(), workers=settings.WEB_THREADS)  # type: ignore[arg-type]

# Imports models, so only after get_wsgi_application() has set Django up.
from nanoclone.mcp import transport as mcp  # noqa: E402


async def lifespan(receive: Any, send: Any) -> None:
    await receive()  # lifespan.startup
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
        await django_app(scope, receive, send)  # type: ignore[arg-type]
