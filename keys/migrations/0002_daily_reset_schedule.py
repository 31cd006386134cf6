"""Creates the django-q2 schedule that runs the key pool's daily reset.

Counters carry their quota day, so the pool stays correct even if this never runs;
the reset keeps the table tidy and logs a daily summary.
"""

import datetime as dt
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import migrations

NAME = "Daily key-pool reset"


def create_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    tz = ZoneInfo(settings.QUOTA_TIMEZONE)
    tomorrow = dt.datetime.now(tz).date() + dt.timedelta(days=1)
    next_run = dt.datetime.combine(tomorrow, dt.time(0, 1), tzinfo=tz)
    Schedule.objects.update_or_create(
        name=NAME,
        defaults={"func": "keys.pool.reset_daily", "schedule_type": "D", "next_run": next_run, "repeats": -1},
    )


def delete_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("keys", "0001_initial"),
        ("django_q", "0018_task_success_index"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
