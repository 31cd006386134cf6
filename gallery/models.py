from __future__ import annotations

import uuid

import pybase64
from django.conf import settings
from django.core import signing
from django.db import models, transaction
from django.urls import reverse
from django.utils import timezone

from gallery import storage
from gallery.storage import ImageInfo, StoredImage

SIGNING_SALT = "gallery.image-file"
BOARD_SALT = "gallery.board-share"
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


class ImageQuerySet(models.QuerySet["Image"]):
    def delete_with_files(self) -> int:
        """Delete these images; once that commits, their files go where no other image row uses them
        (a reference re-used from the gallery, a twin). Returns how many images went."""
        with transaction.atomic():
            files = set(self.values_list("file", "thumbnail"))
            _, deleted = self.delete()
            # A rolled-back deletion keeps its files: the rows still point at them.
            transaction.on_commit(lambda: _delete_unreferenced(files))
        return deleted.get(Image._meta.label, 0)


def _delete_unreferenced(files: set[tuple[str, str]]) -> None:
    for file, thumbnail in files:
        Image.delete_unreferenced_files(file, thumbnail)


class Image(models.Model):
    """An image file on disk (content-addressed by sha256) and what we know about it.

    Generated images are `output`; reference images a user sent are `input`.
    """

    class Role(models.TextChoices):
        OUTPUT = "output"
        INPUT = "input"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="images")
    conversation = models.ForeignKey(
        "conversations.Conversation", on_delete=models.CASCADE, null=True, blank=True, related_name="images"
    )
    message = models.ForeignKey(
        "conversations.Message", on_delete=models.CASCADE, null=True, blank=True, related_name="images"
    )
    job = models.ForeignKey(
        "conversations.Job", on_delete=models.SET_NULL, null=True, blank=True, related_name="images"
    )
    role = models.CharField(max_length=6, choices=Role.choices, default=Role.OUTPUT)
    index = models.PositiveSmallIntegerField(default=0, help_text="Position among the job's images.")
    file = models.CharField(max_length=200, help_text="Path under MEDIA_ROOT.")
    thumbnail = models.CharField(max_length=200, blank=True)
    sha256 = models.CharField(max_length=64, db_index=True)
    mime_type = models.CharField(max_length=20)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    bytes = models.PositiveBigIntegerField()
    prompt = models.TextField(blank=True)
    model = models.CharField(max_length=80, blank=True)
    thought_signature = models.TextField(blank=True)
    # What Gemini would bill for the call that made it (keys.pricing), in USD; None for inputs and
    # for images made before costs were estimated.
    cost = models.DecimalField(max_digits=10, decimal_places=6, null=True, blank=True)
    favorite = models.BooleanField(default=False)
    # Lineage: an output knows the image it edits (the conversation's previous image, or the gallery
    # image it was started from); an input reference knows the gallery image it was taken from.
    edited_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="edits", editable=False
    )
    original = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="copies", editable=False
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = ImageQuerySet.as_manager()

    # The file's bytes as base64 when some code already has them so (the pipeline keeps Gemini's
    # own base64 of an image it just stored): not a column.
    encoded: str | None = None

    class Meta:
        ordering = ["-created_at", "-id"]
        # One per gallery filter, each in the gallery's order, so pages and counts read an index.
        # Prompt search has its own (migration 0004: FTS5 on SQLite, pg_trgm on PostgreSQL).
        indexes = [
            models.Index(fields=["user", "role", "-created_at", "-id"], name="gallery_image_order"),
            models.Index(fields=["conversation", "-created_at", "-id"], name="gallery_image_conversation"),
            models.Index(fields=["user", "role", "favorite", "-created_at", "-id"], name="gallery_image_favorite"),
            models.Index(fields=["user", "role", "model", "-created_at", "-id"], name="gallery_image_model"),
        ]
        constraints = [
            # A job re-run after a crash must not store the same image twice.
            models.UniqueConstraint(
                fields=["job", "index"], condition=models.Q(role="output"), name="one_output_per_job_index"
            )
        ]

    def __str__(self) -> str:
        return f"{self.prompt[:50]} ({self.width}x{self.height})"

    def get_absolute_url(self) -> str:
        return reverse("image-file", args=[self.id, self.extension])

    @property
    def extension(self) -> str:
        return EXTENSIONS.get(self.mime_type, "bin")

    @property
    def format(self) -> str:
        return {"jpg": "JPEG"}.get(self.extension, self.extension.upper())

    @property
    def stored(self) -> StoredImage:
        """This image's file as gallery.storage describes it (to reuse it in another row)."""
        info = ImageInfo(self.mime_type, self.format, self.width, self.height)
        return StoredImage(info, self.sha256, self.file, self.thumbnail, self.bytes)

    def base64(self) -> str:
        """The file's bytes as base64 (what the synchronous doors answer with)."""
        if self.encoded is None:
            self.encoded = pybase64.b64encode(storage.read(self.file)).decode()  # base64's output, 40x as fast
        return self.encoded

    @property
    def dimensions(self) -> str:
        return f"{self.width}x{self.height}"

    def thumbnail_url(self) -> str:
        return reverse("image-thumbnail", args=[self.id])

    def _signature(self) -> str:
        _, stamp, signature = signing.TimestampSigner(salt=SIGNING_SALT).sign(str(self.id)).rsplit(":", 2)
        return f"ts={stamp}&sig={signature}"

    def signed_url(self) -> str:
        """A URL that downloads the file without a token for SIGNED_URL_MAX_AGE (hosted-API dialects)."""
        return f"{self.get_absolute_url()}?{self._signature()}"

    def signed_thumbnail_url(self) -> str:
        """The thumbnail's URL, readable without a token as long as signed_url (a shared board)."""
        return f"{self.thumbnail_url()}?{self._signature()}"

    def check_signature(self, stamp: str, signature: str) -> bool:
        try:
            signing.TimestampSigner(salt=SIGNING_SALT).unsign(
                f"{self.id}:{stamp}:{signature}", max_age=settings.SIGNED_URL_MAX_AGE
            )
        except signing.BadSignature:
            return False
        return True

    @staticmethod
    def delete_unreferenced_files(file: str, thumbnail: str) -> None:
        """Remove a file once no Image row points at it any more (several rows may share one file)."""
        if not Image.objects.filter(file=file).exists():
            storage.delete(file, thumbnail)


class Board(models.Model):
    """A named collection of a user's images (an image may be on several boards)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="boards")
    name = models.CharField(max_length=100)
    images = models.ManyToManyField(Image, related_name="boards", blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["user", "name"], name="one_board_per_name")]

    def __str__(self) -> str:
        return self.name

    def share_token(self) -> str:
        """What a link that shows the board without logging in carries (for SIGNED_URL_MAX_AGE). It
        names the board's row and its creation, so a board deleted and made again isn't shared."""
        return signing.TimestampSigner(salt=BOARD_SALT).sign(f"{self.pk}.{self.created_at.timestamp():.6f}")

    @classmethod
    def shared(cls, token: str) -> Board | None:
        """The board a share token names, while the link is valid."""
        try:
            value = signing.TimestampSigner(salt=BOARD_SALT).unsign(token, max_age=settings.SIGNED_URL_MAX_AGE)
        except signing.BadSignature:
            return None
        pk, _, created = value.partition(".")
        board = cls.objects.filter(pk=int(pk)).first() if pk.isdigit() else None
        return board if board and f"{board.created_at.timestamp():.6f}" == created else None
