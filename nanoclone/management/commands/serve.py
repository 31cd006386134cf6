"""`python manage.py serve`: migrate, then run the web server and the django-q2 cluster together.

Stopping: SIGTERM (docker stop, systemd, Kubernetes) and Ctrl-C do the same, whether they reach
serve alone or its whole process group: the web server stops taking requests and lets those in
flight finish, the cluster finishes its tasks, both within NANOCLONE_SHUTDOWN_GRACE_SECONDS of
the signal; then whatever is left of the cluster is killed and serve exits 0.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework.authtoken.models import Token
from uvicorn.supervisors.multiprocess import Multiprocess

from keys import crypto
from keys.models import ApiKey
from nanoclone import databases, eventloop
from nanoclone.cluster import InProcessCluster

DEMO_KEY = "emu-demo-key-offline"


def ensure_admin() -> tuple[str, str | None]:
    """The admin user, and its password if this start created the account (else None: never print
    it again). The password comes from the environment, or is generated once into the data dir."""
    password_file = Path(settings.DATA_DIR) / "admin_password"
    password = settings.ADMIN_PASSWORD or (password_file.read_text().strip() if password_file.exists() else "")
    if not password:
        password = secrets.token_urlsafe(12)
        password_file.write_text(password)
        password_file.chmod(0o600)
    user, created = get_user_model().objects.get_or_create(
        username=settings.ADMIN_USERNAME, defaults={"is_staff": True, "is_superuser": True}
    )
    if created or settings.ADMIN_PASSWORD:
        user.set_password(password)
        user.save()
    return user.username, password if created else None


def start_demo_emulator(emulator_class: Any, latency_ms: int) -> Any:
    """The demo's emulator, on the port it had last time (kept in the data directory) so that
    addresses people copied keep working across restarts; a new one only when that port is taken."""
    remembered = Path(settings.DATA_DIR) / "emulator_port"
    port = int(remembered.read_text()) if remembered.exists() and remembered.read_text().strip().isdigit() else 0
    try:
        emulator = emulator_class(port=port, latency_ms=latency_ms)
    except OSError:  # taken by something else meanwhile
        emulator = emulator_class(latency_ms=latency_ms)
    remembered.write_text(str(emulator.url.rsplit(":", 1)[1]))
    return emulator.start()


def ensure_demo_key(emulator_url: str) -> None:
    # Should the emulator's port have changed, the key follows it.
    updated = ApiKey.objects.filter(fingerprint=crypto.fingerprint(DEMO_KEY)).update(
        base_url=emulator_url, enabled=True, invalid=False
    )
    if not updated:
        ApiKey.create(DEMO_KEY, label="Demo (offline emulator)", base_url=emulator_url)


class Shutdown:
    """One stop for the web server and the cluster, started by the first SIGTERM or SIGINT,
    whichever process caught it first: serve's own handler, uvicorn's, or uvicorn's supervisor's."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.deadline: float | None = None
        self.cluster: subprocess.Popen[bytes] | None = None  # NANOCLONE_CLUSTER=processes
        self.cluster_told = False
        self.in_process: InProcessCluster | None = None  # NANOCLONE_CLUSTER=threads
        self.tasks_cut_off = False
        self.server: uvicorn.Server | None = None
        self.supervisor: Multiprocess | None = None

    @property
    def requested(self) -> bool:
        return self.deadline is not None

    def begin(self) -> None:
        if self.deadline is not None:
            return
        self.deadline = time.monotonic() + self.grace
        self.tell_cluster()
        if self.server is not None:
            self.server.should_exit = True
        if self.supervisor is not None:
            self.supervisor.should_exit.set()

    def tell_cluster(self) -> None:
        if self.in_process is not None:
            self.in_process.stop()
        # The cluster runs in a session of its own (a signal to serve's group never reaches its
        # workers: django-q2's sentinel dies at once on SIGTERM and its main process then hangs
        # in "stopping"). Its main process alone gets SIGTERM, once: it handles it like Ctrl-C.
        # os.kill, not Popen.send_signal: that reaps an exited process, and its pid must stay
        # ours until stop_cluster() has killed the group.
        if self.cluster is not None and not self.cluster_told:
            self.cluster_told = True
            os.kill(self.cluster.pid, signal.SIGTERM)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """serve's own handler: before uvicorn takes the signals over, and again when it hands
        them back (uvicorn then raises the signal it caught once more; SIGTERM's default action
        would kill serve before it stops the cluster)."""
        self.begin()

    def stop_cluster(self) -> None:
        """Wait for the cluster until the deadline, then kill what is left of its process group
        (in-process: leave its tasks to be cut off when serve exits)."""
        if self.in_process is None and self.cluster is None:
            return
        self.begin()
        self.tell_cluster()  # if the signal came while it was being started
        assert self.deadline is not None
        if self.in_process is not None:
            self.tasks_cut_off = not self.in_process.join(max(0.0, self.deadline - time.monotonic()))
        cluster = self.cluster
        if cluster is None:
            return
        # Not reaped while waiting: until then its pid, and so its process group id, can't be reused.
        while time.monotonic() < self.deadline and not exited(cluster.pid):
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(cluster.pid, signal.SIGKILL)
        cluster.wait()


def exited(pid: int) -> bool:
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, shutdown: Shutdown) -> None:
        super().__init__(config)
        self.shutdown_of_all = shutdown

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self.shutdown_of_all.begin()  # the cluster stops while the web server drains


class Supervisor(Multiprocess):
    """uvicorn's supervisor of --workers N processes; it stops them on SIGTERM/SIGINT."""

    def __init__(self, config: uvicorn.Config, sockets: list[Any], shutdown: Shutdown) -> None:
        super().__init__(config, sockets)
        self.shutdown_of_all = shutdown

    def handle_int(self) -> None:
        super().handle_int()
        self.stop()

    def handle_term(self) -> None:
        super().handle_term()
        self.stop()

    def stop(self) -> None:
        # The listening socket is this process's too: open here, it would queue new connections
        # that no worker takes any more, instead of refusing them.
        for sock in self.sockets:
            sock.close()
        self.shutdown_of_all.begin()


class Command(BaseCommand):
    help = "Run NanoClone: migrations, the web server and the background worker cluster, until Ctrl-C or SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=settings.PORT, help="Port (NANOCLONE_PORT, 8000).")
        parser.add_argument("--demo", action="store_true", help="Serve offline against a built-in Gemini emulator.")
        parser.add_argument("--no-cluster", action="store_true", help="Don't start the django-q2 cluster.")
        parser.add_argument(
            "--workers", type=int, default=settings.WEB_WORKERS, help="Web server processes (NANOCLONE_WEB_WORKERS)."
        )
        parser.add_argument("--emulator-latency-ms", type=int, default=1500)

    def handle(self, *args: Any, **options: Any) -> None:
        shutdown = Shutdown(settings.SHUTDOWN_GRACE_SECONDS)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, shutdown.on_signal)
        emulator = None
        try:
            with databases.migrating_alone():
                call_command("migrate", interactive=False, verbosity=0)
            try:
                crypto.check_decrypts(ApiKey.objects.values_list("secret_encrypted", flat=True).first())
            except crypto.WrongKey as wrong:
                raise CommandError(str(wrong)) from wrong
            if settings.METRICS_ENABLED and settings.METRICS_MULTIPROC_DIR:
                # The last run's per-process counts (prometheus-client's multiprocess files): the
                # counters of this run start from zero, which Prometheus reads as a restart.
                for stale in Path(settings.METRICS_MULTIPROC_DIR).glob("*.db"):
                    stale.unlink()
            if options["demo"]:
                from keys.gemini.emulator import GeminiEmulator

                emulator = start_demo_emulator(GeminiEmulator, options["emulator_latency_ms"])
                ensure_demo_key(emulator.url)
                os.environ["NANOCLONE_DEMO"] = "1"
                settings.DEMO_MODE = True
                # Keys added on the keys page without a base URL reach the emulator too (the web
                # workers and the cluster read it from the environment they inherit).
                os.environ["NANOCLONE_GEMINI_BASE_URL"] = settings.GEMINI_BASE_URL = emulator.url
                os.environ["NANOCLONE_VERTEX_BASE_URL"] = settings.VERTEX_BASE_URL = emulator.url
            self.stdout.write(self.welcome(options, emulator.url if emulator else None))
            if not options["no_cluster"] and not shutdown.requested:
                if settings.CLUSTER == "threads":
                    shutdown.in_process = InProcessCluster().start()
                else:
                    shutdown.cluster = subprocess.Popen(
                        [sys.executable, "manage.py", "qcluster"], cwd=settings.BASE_DIR, start_new_session=True
                    )
            self.run_web_server(options, shutdown)
        finally:
            shutdown.stop_cluster()
            if emulator:
                emulator.stop()
            self.stdout.write("NanoClone stopped.")
        self.leave_running_work(shutdown)

    def welcome(self, options: dict[str, Any], emulator_url: str | None) -> str:
        """What serve prints: the login and the API token on first start only (service logs keep it)."""
        username, password = ensure_admin()
        token, token_created = Token.objects.get_or_create(user=get_user_model().objects.get(username=username))
        url = f"http://{options['host']}:{options['port']}/"
        if password and not settings.ADMIN_PASSWORD:
            login = f"{username} / {password}  (kept in {Path(settings.DATA_DIR) / 'admin_password'})"
        elif settings.ADMIN_PASSWORD:
            login = f"{username} (password: NANOCLONE_ADMIN_PASSWORD)"
        else:
            login = (
                f"{username} (password in {Path(settings.DATA_DIR) / 'admin_password'}; "
                f"python manage.py changepassword {username} changes it)"
            )
        api_token = (
            token.key
            if token_created
            else f"shown on first start only; python manage.py api_token {username} makes a new one"
        )
        lines = [
            f"NanoClone is running at {url}",
            f"  login:     {login}",
            f"  API token: {api_token}",
            f"  API docs:  {url}api/docs",
            f"  MCP:       {url}mcp (Authorization: Bearer <API token>; stdio: python manage.py mcp)",
        ]
        if emulator_url:
            lines.append(f"  demo mode: images come from the offline Gemini emulator at {emulator_url}")
        elif not ApiKey.objects.exists():
            lines.append(f"  no Gemini key yet: add one at {url}keys or with POST /api/keys")
        return "\n".join(lines) + "\nStop with Ctrl-C or SIGTERM."

    def run_web_server(self, options: dict[str, Any], shutdown: Shutdown) -> None:
        """uvicorn as uvicorn.run() would run it, with the hooks that start the one shutdown."""
        config = uvicorn.Config(
            "nanoclone.asgi:application",
            host=options["host"],
            port=options["port"],
            log_level="warning",
            lifespan="on",
            # Counted from the signal: requests in flight get this long, then they are cancelled.
            timeout_graceful_shutdown=settings.SHUTDOWN_GRACE_SECONDS,
            workers=options["workers"],
        )
        if config.workers > 1:
            # The workers are new interpreters that read their settings from the environment: the
            # flag must reach them too (MCP over HTTP keeps no session across several processes).
            os.environ["NANOCLONE_WEB_WORKERS"] = str(config.workers)
            # The workers share out new connections by their counts there (nanoclone/eventloop.py).
            with tempfile.TemporaryDirectory(prefix="nanoclone-web-") as board:
                os.environ[eventloop.BALANCE_DIR_ENV] = board
                config.loop = "nanoclone.eventloop:LeastConnectionsLoop"
                shutdown.supervisor = Supervisor(config, [config.bind_socket()], shutdown)
                if shutdown.requested:
                    shutdown.supervisor.should_exit.set()
                shutdown.supervisor.run()
        else:
            shutdown.server = Server(config, shutdown)
            if shutdown.requested:
                shutdown.server.should_exit = True
            shutdown.server.run()

    def leave_running_work(self, shutdown: Shutdown) -> None:
        """Python waits for every thread at exit, so a request or an in-process task still running
        after the grace (a Gemini call may take NANOCLONE_GEMINI_TIMEOUT) would keep serve alive
        past its stop timeout. Its job is recovered like any interrupted one; serve ends without it."""
        asgi = sys.modules.get("nanoclone.asgi")  # only imported when this process served requests
        requests = asgi.django_requests.running if asgi is not None else 0
        if requests:
            self.stdout.write(f"{requests} request(s) still running were cut off.")
        if shutdown.tasks_cut_off:
            self.stdout.write("Background tasks still running were cut off.")
        if requests or shutdown.tasks_cut_off:
            self.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
