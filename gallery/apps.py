from django.apps import AppConfig
from django.conf import settings


class GalleryConfig(AppConfig):
    name = "gallery"

    def ready(self) -> None:
        import PIL.Image

        # Pillow's decompression-bomb guard, process-wide, set once from settings.
        PIL.Image.MAX_IMAGE_PIXELS = settings.MAX_IMAGE_PIXELS
