"""`python manage.py gemini_emulator --port P`: the offline Gemini API, until Ctrl-C."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from keys.gemini.emulator import GeminiEmulator


class Command(BaseCommand):
    help = "Serve an offline emulator of Gemini's image generation API (google-genai compatible)."
    # It touches neither models nor the database: start even on a fresh checkout.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8765, help="0 picks a free port (default 8765)")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--latency-ms", type=int, default=0, help="delay before every answer")
        parser.add_argument("--verbose", action="store_true", help="log every request")
        parser.add_argument(
            "--minute-seconds", type=float, default=60.0, help="the window of emu-rpm<N>-* keys (default 60)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        emulator = GeminiEmulator(
            host=options["host"],
            port=options["port"],
            latency_ms=options["latency_ms"],
            verbose=options["verbose"],
            minute_seconds=options["minute_seconds"],
        )
        self.stdout.write(f"Gemini emulator on {emulator.url} (latency {options['latency_ms']} ms), Ctrl-C to stop")
        self.stdout.flush()
        try:
            emulator.serve_forever()
        except KeyboardInterrupt:
            pass  # Ctrl-C is the normal way to stop it
        finally:
            emulator.stop()
            self.stdout.write(f"Gemini emulator stopped; {len(emulator.requests)} generateContent requests logged")
