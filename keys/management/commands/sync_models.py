"""`python manage.py sync_models [--key ID]`: compare the model catalogue with Gemini's models.list."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from keys import checks, pool
from keys.models import ApiKey


class Command(BaseCommand):
    help = "Ask Gemini's models.list with a key and report how it differs from NanoClone's model catalogue."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--key", type=int, help="the AI Studio key to ask with (default: the first usable one)")

    def handle(self, *args: Any, **options: Any) -> None:
        key = ApiKey.objects.filter(pk=options["key"]).first() if options["key"] else checks.catalogue_key()
        if key is None:
            raise CommandError("No such key." if options["key"] else "No usable AI Studio key to ask with.")
        try:
            result = checks.sync_models(key)
        except pool.GeminiError as error:
            raise CommandError(f"{key.masked}: models.list failed: {error}") from error
        self.stdout.write(f"{key.masked}: {result.summary}.")
