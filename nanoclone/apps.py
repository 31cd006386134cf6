from django.apps import AppConfig


class NanocloneConfig(AppConfig):
    name = "nanoclone"
    verbose_name = "NanoClone"
