"""The MCP server's transports: stdio (`python manage.py mcp`) and streamable HTTP at /mcp (nanoclone.asgi).

Both set the Caller the tools act for: stdio once, as NANOCLONE_MCP_USER; HTTP per request, as the
user of the REST API token the request carries.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import OperationalError, connections
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from nanoclone import databases
from nanoclone.api.auth import KEYWORDS, user_for_token
from nanoclone.mcp.tools import Caller, acting_as, server

MCP_PATH = "/mcp"


def run_stdio(user: Any) -> None:
    """Serve the tools on stdin/stdout as `user` until the client disconnects."""
    with acting_as(Caller(user, base_url=settings.PUBLIC_URL, local=True)):
        server.run("stdio")


def transport_security() -> TransportSecuritySettings:
    """DNS-rebinding protection from the hosts Django serves (NANOCLONE_ALLOWED_HOSTS).

    A page on another origin must not drive /mcp through a browser on the user's machine.
    The SDK matches exact names, so Django's ".example.com" only allows example.com itself here;
    "*" turns the check off, as it does for Django.
    """
    if "*" in settings.ALLOWED_HOSTS:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    hosts: list[str] = []
    origins: list[str] = list(settings.CSRF_TRUSTED_ORIGINS)
    for entry in settings.ALLOWED_HOSTS:
        host = entry.lstrip(".")
        hosts += [host, f"{host}:*"]
        origins += [f"{scheme}://{host}{port}" for scheme in ("http", "https") for port in ("", ":*")]
    if settings.PUBLIC_URL:
        public = urlsplit(settings.PUBLIC_URL)
        hosts.append(public.netloc)
        origins.append(f"{public.scheme}://{public.netloc}")
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=list(dict.fromkeys(hosts)),
        allowed_origins=list(dict.fromkeys(origins)),
    )


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def _token(scope: dict[str, Any]) -> str:
    parts = _header(scope, b"authorization").split()
    if len(parts) == 2 and parts[0].lower().encode() in KEYWORDS:
        return parts[1]
    return ""


def _user_for_token(token: str) -> Any | None:
    try:
        return user_for_token(token)
    finally:
        connections.close_all()  # a thread of sync_to_async's, not a Django request's


async def _json_response(send: Any, status: int, code: str, message: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"success": False, "data": None, "error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


class HttpTransport:
    """Streamable HTTP for nanoclone.asgi: the REST API's token check in front of the SDK's session manager."""

    def __init__(self, mcp: MCPServer = server) -> None:
        self._mcp = mcp
        self._manager: StreamableHTTPSessionManager | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the session manager for the app's lifespan (the ASGI dispatcher enters this at startup)."""
        # A session manager runs only once, so each lifespan gets a new one (tests start the app repeatedly).
        self._mcp.streamable_http_app(
            streamable_http_path=MCP_PATH,
            transport_security=transport_security(),
            # Reference images travel inside the JSON body as data: URIs: allow what the REST API allows.
            max_request_body_size=settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
            # Several web processes don't share sessions: then every request stands alone.
            stateless_http=settings.WEB_WORKERS > 1,
        )
        manager = self._mcp.session_manager
        async with manager.run():
            self._manager = manager
            try:
                yield
            finally:
                self._manager = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        manager = self._manager
        if manager is None:
            await _json_response(send, 503, "unavailable", "The MCP endpoint starts with the ASGI lifespan.", [])
            return
        token = _token(scope)
        try:
            user = await sync_to_async(_user_for_token, thread_sensitive=False)(token) if token else None
        except OperationalError as error:
            if not databases.noted(error):
                raise
            retry = [(b"retry-after", str(databases.RETRY_AFTER_SECONDS).encode())]
            await _json_response(send, 503, "database_unavailable", databases.MESSAGE, retry)
            return
        if user is None:
            message = "Invalid API token." if token else "Authentication required: send Authorization: Bearer <token>."
            await _json_response(send, 401, "not_authenticated", message, [(b"www-authenticate", b"Bearer")])
            return
        # The session manager ties each MCP session to the principal that opened it, so another
        # user's token can't take over a session id.
        principal = AccessToken(token=token, client_id=f"nanoclone-user-{user.pk}", scopes=[], subject=str(user.pk))
        scope = {**scope, "user": AuthenticatedUser(principal)}
        base_url = f"{scope.get('scheme', 'http')}://{_header(scope, b'host')}" if _header(scope, b"host") else ""
        with acting_as(Caller(user, base_url=base_url)):
            await manager.handle_request(scope, receive, send)


http_transport = HttpTransport()


def is_mcp_path(path: str) -> bool:
    return path in (MCP_PATH, MCP_PATH + "/")
