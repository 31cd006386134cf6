"""The stale-job sweep runs as often as NANOCLONE_RECOVERY_INTERVAL_MINUTES says (default 1), not
every 5 minutes; workers bring it in line again whenever they start (background.schedule_recovery)."""

from django.conf import settings
from django.db import migrations

NAME = "Recover stale jobs"


def follow_settings(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=NAME,
        defaults={
            "func": "conversations.pipeline.recover_stale_jobs",
            "schedule_type": "I",
            "minutes": settings.RECOVERY_INTERVAL_MINUTES,
            "repeats": -1,
        },
    )


def back_to_five(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).update(minutes=5)


class Migration(migrations.Migration):
    dependencies = [("conversations", "0007_idempotency")]

    operations = [migrations.RunPython(follow_settings, back_to_five)]
