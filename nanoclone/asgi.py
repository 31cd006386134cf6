"""The ASGI entry point `serve` runs: a small dispatcher in front of Django.

Django runs as a WSGI app in a thread pool (a2wsgi): Django's own ASGI handler would run
every sync view on one shared thread, and generation requests spend seconds waiting on
Gemini, so they need real threads to overlap.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nanoclone.settings")

from a2wsgi import WSGIMiddleware
from django.conf import settings
from django.core.wsgi import get_wsgi_application

django_app = WSGIMiddleware(get_wsgi_application(), workers=settings.WEB_THREADS)  # type: ignore[arg-type]


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await django_app(scope, receive, send)  # type: ignore[arg-type]
