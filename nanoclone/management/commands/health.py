import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from nanoclone import health


class Command(BaseCommand):
    help = (
        "Print what /health answers and exit 1 when NanoClone is unhealthy (the database or the media "
        "store doesn't answer): a health check for a process that serves no HTTP, such as a worker."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--cluster", action="store_true", help="Also exit 1 unless a cluster on this host is alive (qcluster)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        body = health.report()
        self.stdout.write(json.dumps(body))
        if body["status"] == "unhealthy":
            raise CommandError("unhealthy")
        if options["cluster"] and not health.cluster_alive_here():
            raise CommandError("no cluster alive on this host")
