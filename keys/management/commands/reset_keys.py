from typing import Any

from django.core.management.base import BaseCommand

from keys.pool import reset_daily


class Command(BaseCommand):
    help = "Run the daily key-pool reset now: counters of past quota days to zero, expired cooldowns cleared."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(reset_daily())
