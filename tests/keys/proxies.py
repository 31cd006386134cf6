"""Real proxy servers on loopback for the credentials' tests: Debian's tinyproxy (HTTP, forwarding
http:// and tunnelling https:// with CONNECT) and microsocks (SOCKS5), each with a user and a
password, each logging the connections it made, so a test proves a call went through it."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port, stop_group, wait_until


@dataclass
class RunningProxy:
    url: str  # with its user and password
    log: Path

    def seen(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def reached(self, address: str) -> bool:
        """Did the proxy connect to `address` (host:port) for a client?"""
        return address in self.seen()


def _needs(program: str) -> None:
    if shutil.which(program) is None:
        pytest.fail(f"{program} is not installed: apt-get install {program} (.ci/run does)")


@contextmanager
def _running(command: list[str], port: int, log: Path) -> Iterator[None]:
    with log.open("ab") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: _listening(port) or process.poll() is not None, 10, f"{command[0]} to listen")
        assert process.poll() is None, f"{command[0]} exited: {log.read_text(errors='replace')[-500:]}"
        yield
    finally:
        stop_group(process, timeout=10)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def tinyproxy(folder: Path, user: str = "alice", password: str = "s3cret-http") -> Iterator[RunningProxy]:
    _needs("tinyproxy")
    port, log = free_port(), folder / f"tinyproxy-{os.urandom(3).hex()}.log"
    config = folder / f"{log.stem}.conf"
    config.write_text(
        f"Port {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 100\nAllow 127.0.0.1\n"
        f'LogFile "{log}"\nLogLevel Connect\nBasicAuth {user} {password}\nDisableViaHeader Yes\n'
    )
    with _running(["tinyproxy", "-d", "-c", str(config)], port, folder / f"{log.stem}.out"):
        yield RunningProxy(f"http://{user}:{password}@127.0.0.1:{port}", log)


@contextmanager
def microsocks(folder: Path, user: str = "bob", password: str = "s3cret-socks") -> Iterator[RunningProxy]:
    _needs("microsocks")
    port, log = free_port(), folder / f"microsocks-{os.urandom(3).hex()}.log"
    with _running(["microsocks", "-i", "127.0.0.1", "-p", str(port), "-u", user, "-P", password], port, log):
        yield RunningProxy(f"socks5://{user}:{password}@127.0.0.1:{port}", log)
