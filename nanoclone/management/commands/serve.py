"""`python manage.py serve`: migrate, then run the web server and the django-q2 cluster together."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from rest_framework.authtoken.models import Token

from keys import crypto
from keys.models import ApiKey

DEMO_KEY = "emu-demo-key-offline"


def ensure_admin() -> tuple[str, str]:
    """The admin user and its password: from the environment, or generated once into the data dir."""
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
    return user.username, password


def ensure_demo_key(emulator_url: str) -> None:
    # The emulator gets a new port on every start, so the key follows it.
    updated = ApiKey.objects.filter(fingerprint=crypto.fingerprint(DEMO_KEY)).update(
        base_url=emulator_url, enabled=True, invalid=False
    )
    if not updated:
        ApiKey.create(DEMO_KEY, label="Demo (offline emulator)", base_url=emulator_url)


class Command(BaseCommand):
    help = "Run NanoClone: migrations, the web server and the background worker cluster, until Ctrl-C."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--demo", action="store_true", help="Serve offline against a built-in Gemini emulator.")
        parser.add_argument("--no-cluster", action="store_true", help="Don't start the django-q2 cluster.")
        parser.add_argument(
            "--workers", type=int, default=settings.WEB_WORKERS, help="Web server processes (NANOCLONE_WEB_WORKERS)."
        )
        parser.add_argument("--emulator-latency-ms", type=int, default=1500)

    def handle(self, *args: Any, **options: Any) -> None:
        import uvicorn

        call_command("migrate", interactive=False, verbosity=0)
        emulator = None
        if options["demo"]:
            from keys.gemini.emulator import GeminiEmulator

            emulator = GeminiEmulator(latency_ms=options["emulator_latency_ms"]).start()
            ensure_demo_key(emulator.url)
            os.environ["NANOCLONE_DEMO"] = "1"
            settings.DEMO_MODE = True
        username, password = ensure_admin()
        user = get_user_model().objects.get(username=username)
        token, _ = Token.objects.get_or_create(user=user)
        cluster = None
        if not options["no_cluster"]:
            cluster = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=settings.BASE_DIR)
        url = f"http://{options['host']}:{options['port']}/"
        lines = [
            f"NanoClone is running at {url}",
            f"  login:     {username} / {password}",
            f"  API token: {token.key}",
            f"  API docs:  {url}api/docs",
            f"  MCP:       {url}mcp (Authorization: Bearer <API token>; stdio: python manage.py mcp)",
        ]
        if emulator:
            lines.append(f"  demo mode: images come from the offline Gemini emulator at {emulator.url}")
        elif not ApiKey.objects.exists():
            lines.append(f"  no Gemini key yet: add one at {url}keys or with POST /api/keys")
        self.stdout.write("\n".join(lines) + "\nPress Ctrl-C to stop.")
        try:
            uvicorn.run(
                "nanoclone.asgi:application",
                host=options["host"],
                port=options["port"],
                log_level="warning",
                lifespan="on",
                timeout_graceful_shutdown=5,
                workers=options["workers"],
            )
        finally:
            if cluster:
                cluster.terminate()
                try:
                    cluster.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    cluster.kill()
            if emulator:
                emulator.stop()
            self.stdout.write("NanoClone stopped.")
