"""The event loop of `serve --workers N`: each web worker takes a new connection only when no
other worker has fewer, as a least-connections load balancer would.

The workers share one listening socket, and asyncio accepts every connection waiting on it at
once: a burst of clients went mostly to whichever worker woke first (76 against 52 of 128
kept-alive connections, 111 against 17 at worst), and that worker's clients waited longest.

Each worker writes its count of open connections to a file of its own in a directory serve
makes (NANOCLONE_WEB_BALANCE_DIR), and reads the others' before it accepts. Kept free of Django
imports: uvicorn's worker processes import it before Django is set up.
"""

from __future__ import annotations

import asyncio
import os
import select
import time
from pathlib import Path
from typing import Any

BALANCE_DIR_ENV = "NANOCLONE_WEB_BALANCE_DIR"
PUBLISH_SECONDS = 0.1  # how often a worker writes its count (also after each connection it takes)
STALE_SECONDS = 1.0  # a worker silent this long has stopped or is stuck: it is not waited for
PAUSE_SECONDS = 0.005  # a worker with more connections leaves a waiting one this long to the others,
MAX_WAIT_SECONDS = 0.05  # and takes it itself after this: a slow or stopping worker holds nobody up


class Board:
    """The workers' connection counts: a file per worker process, "<count> <monotonic time>"."""

    def __init__(self, directory: Path, name: str | None = None) -> None:
        self.directory = directory
        self.name = name or str(os.getpid())
        self._fd = os.open(directory / self.name, os.O_RDWR | os.O_CREAT, 0o600)

    def publish(self, count: int) -> None:
        line = f"{count} {time.monotonic():.3f}\n".encode()
        os.pwrite(self._fd, line.ljust(32), 0)  # fixed width: a shorter line leaves no old digits

    def fewest_elsewhere(self) -> int | None:
        """The fewest connections any other live worker has, or None when there is no other."""
        fewest = None
        now = time.monotonic()
        for entry in os.scandir(self.directory):
            if entry.name == self.name:
                continue
            try:
                count, written = Path(entry.path).read_text().split()
            except (OSError, ValueError):  # gone meanwhile, or being written for the first time
                continue
            if now - float(written) <= STALE_SECONDS:
                fewest = int(count) if fewest is None else min(fewest, int(count))
        return fewest

    def close(self) -> None:
        os.close(self._fd)
        (self.directory / self.name).unlink(missing_ok=True)


class LeastConnectionsLoop(asyncio.SelectorEventLoop):
    """asyncio's selector loop with the accept of the listening socket gated by the Board.

    It overrides asyncio's `_accept_connection` (the reader callback of a listening socket, the
    same from Python 3.8 to 3.13) and reads the open connections from the asyncio Server's
    `_active_count`; without the directory in the environment it is asyncio's loop unchanged."""

    def __init__(self) -> None:
        super().__init__()
        directory = os.environ.get(BALANCE_DIR_ENV)
        self.directory = Path(directory) if directory else None
        self.board: Board | None = None  # on it from the moment this worker serves
        self._servers: list[Any] = []
        self._waiting_since: float | None = None  # a connection is waiting that this worker left

    async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:
        server = await super().create_server(*args, **kwargs)
        if self.directory is not None:
            self._servers.append(server)
            if self.board is None:
                self.board = Board(self.directory)
                self._publish_regularly()
        return server

    def open_connections(self) -> int:
        return sum(server._active_count for server in self._servers)

    def _publish_regularly(self) -> None:
        if self.board is not None:
            self.board.publish(self.open_connections())
            self.call_later(PUBLISH_SECONDS, self._publish_regularly)

    def _accept_connection(
        self, protocol_factory: Any, sock: Any, sslcontext: Any, server: Any, backlog: int, *rest: Any
    ) -> None:
        if self.board is None or server not in self._servers:
            return super()._accept_connection(protocol_factory, sock, sslcontext, server, backlog, *rest)  # type: ignore[misc]
        mine = self.open_connections()
        fewest = self.board.fewest_elsewhere()
        now = time.monotonic()
        if fewest is not None and fewest < mine and now - (self._waiting_since or now) < MAX_WAIT_SECONDS:
            self._waiting_since = self._waiting_since or now
            self._remove_reader(sock.fileno())  # type: ignore[attr-defined]
            again = (protocol_factory, sock, sslcontext, server, backlog, *rest)
            self.call_later(PAUSE_SECONDS, self._listen_again, *again)
            return None
        self._waiting_since = None
        # One at a time: the count is read again before the next, which may be another worker's.
        super()._accept_connection(protocol_factory, sock, sslcontext, server, 1, *rest)  # type: ignore[misc]
        self.board.publish(mine + 1)  # its transport (and _active_count) comes next tick
        return None

    def _listen_again(self, protocol_factory: Any, sock: Any, sslcontext: Any, server: Any, *args: Any) -> None:
        if not server.is_serving():  # it stopped meanwhile (shutdown): its socket is closed
            return
        if not select.select([sock], [], [], 0)[0]:
            self._waiting_since = None  # another worker took it
        self._add_reader(sock.fileno(), self._accept_connection, protocol_factory, sock, sslcontext, server, *args)  # type: ignore[attr-defined]

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
            self.board = None
        super().close()
