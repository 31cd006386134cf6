"""Default prices (Google's published Gemini API image prices, as of 2026-12-02) and the daily
schedule that deletes usage records older than NANOCLONE_USAGE_RETENTION_DAYS.

Image output is billed per token: a 512 image is 747 tokens, 1K 1120, 2K 1680, 4K 2520 (Pro: 1120
up to 2K, 2000 at 4K). Batch is half of standard. Edit the figures in the admin (Prices).
"""

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import migrations

NAME = "Daily usage-ledger pruning"
SOURCE = "Gemini API pricing, 2026-12-02"
TOKENS = {"512": 747, "1K": 1120, "2K": 1680, "4K": 2520}
# model: (USD per 1M image output tokens, per 1M input tokens, per 1M text/thinking output tokens, sizes)
MODELS = {
    "gemini-nano-banana-2.1": ("30", "1.50", "7.50", ("1K", "2K", "4K")),
    "gemini-3.1-flash-image": ("60", "0.50", "3.00", ("512", "1K", "2K", "4K")),
    "gemini-3-pro-image": ("120", "2.00", "12.00", ("1K", "2K", "4K")),
    "gemini-3.1-flash-lite-image": ("30", "0.25", "1.50", ("1K",)),
}
PRO_TOKENS = {"1K": 1120, "2K": 1120, "4K": 2000}


def create(apps, schema_editor):
    Price = apps.get_model("keys", "Price")
    million = Decimal(1_000_000)
    for model, (image_rate, input_rate, text_rate, sizes) in MODELS.items():
        for size in sizes:
            tokens = (PRO_TOKENS if model == "gemini-3-pro-image" else TOKENS)[size]
            standard = Decimal(image_rate) * tokens / million
            for tier, factor in (("standard", Decimal(1)), ("batch", Decimal("0.5"))):
                Price.objects.update_or_create(
                    model=model,
                    resolution=size,
                    tier=tier,
                    defaults={
                        "per_image": (standard * factor).quantize(Decimal("0.000001")),
                        "input_per_million": Decimal(input_rate) * factor,
                        "text_output_per_million": Decimal(text_rate) * factor,
                        "source": SOURCE,
                    },
                )
    Schedule = apps.get_model("django_q", "Schedule")
    tz = ZoneInfo(settings.QUOTA_TIMEZONE)
    next_run = dt.datetime.combine(dt.datetime.now(tz).date() + dt.timedelta(days=1), dt.time(0, 11), tzinfo=tz)
    Schedule.objects.update_or_create(
        name=NAME,
        defaults={"func": "keys.usage.prune", "schedule_type": "D", "next_run": next_run, "repeats": -1},
    )


def delete(apps, schema_editor):
    apps.get_model("keys", "Price").objects.filter(source=SOURCE).delete()
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("keys", "0004_usage_ledger_prices_budgets"),
        ("django_q", "0018_task_success_index"),
    ]

    operations = [migrations.RunPython(create, delete)]
