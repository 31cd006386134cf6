from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        from conversations.background import schedule_recovery
        from conversations.pipeline.dispatch import start_generations

        # Every worker start brings the sweep's schedule in line with the settings.
        post_spawn.connect(schedule_recovery, dispatch_uid="conversations.schedule_recovery")
        # ... and starts its process's generation dispatcher (once a process).
        post_spawn.connect(start_generations, dispatch_uid="conversations.start_generations")
