from django.apps import AppConfig


class NanocloneConfig(AppConfig):
    name = "nanoclone"
    verbose_name = "NanoClone"

    def ready(self) -> None:
        # Connects the dialects' callback receivers and the jobs API's webhook receivers to the
        # job signals in every process, django-q2 workers included (they never import the URLconf).
        from nanoclone import metrics  # noqa: F401 (its job_finished receiver counts generations)
        from nanoclone.dialects import acedata, evolink, jobs  # noqa: F401
