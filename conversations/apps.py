from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        from conversations.background import schedule_recovery

        # Every worker start brings the sweep's schedule in line with the settings.
        post_spawn.connect(schedule_recovery, dispatch_uid="conversations.schedule_recovery")
