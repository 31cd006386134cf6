"""`python manage.py media_move --to s3`: copy the local media into the bucket NANOCLONE_S3_* names.

Every file (originals, thumbnails, display renditions) is uploaded with its sha256 in the object's
metadata, read back and verified against it. Interrupted, it is run again: objects already there
with the right sha256 are skipped. It switches nothing: NanoClone goes on using the local disk until
NANOCLONE_MEDIA_STORE=s3 is set, once the copy is complete.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.client import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Copy the local media (images, thumbnails, renditions) into the S3-compatible bucket, verifying each file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--to", choices=["s3"], required=True, help="Where to copy: the bucket of NANOCLONE_S3_*.")

    def handle(self, *args: Any, **options: Any) -> None:
        bucket, prefix = str(settings.S3_OPTIONS["bucket_name"] or ""), str(settings.S3_OPTIONS["location"] or "")
        if not bucket:
            raise CommandError("Set NANOCLONE_S3_BUCKET (and the other NANOCLONE_S3_* variables) first.")
        root = Path(settings.MEDIA_ROOT)
        files = sorted(
            path for path in root.rglob("*") if path.is_file() and not path.name.startswith(".")
        )  # .*.tmp: a write in progress
        client = _client()
        copied = skipped = 0
        last_shown = 0.0
        for number, path in enumerate(files, 1):
            name = path.relative_to(root).as_posix()
            key = "/".join(part for part in (prefix.strip("/"), name) if part)
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            try:
                if _stored_sha256(client, bucket, key) == digest:
                    skipped += 1
                else:
                    client.put_object(Bucket=bucket, Key=key, Body=data, Metadata={"sha256": digest})
                    back = client.get_object(Bucket=bucket, Key=key)["Body"].read()
                    if hashlib.sha256(back).hexdigest() != digest:
                        raise CommandError(f"{name}: the bucket gave back other bytes than were sent; run again.")
                    copied += 1
            except (BotoCoreError, ClientError) as error:
                raise CommandError(f"{name}: {error}. Nothing switched; run the command again to go on.") from error
            if time.monotonic() - last_shown >= 1 or number == len(files):
                last_shown = time.monotonic()
                self.stdout.write(f"  {number}/{len(files)} files ({number * 100 // max(1, len(files))}%)")
        self.stdout.write(
            f"Media moved to s3://{bucket}: {copied} copied and verified, {skipped} already there, "
            f"{len(files)} in all. Set NANOCLONE_MEDIA_STORE=s3 on every host and restart them."
        )


def _client() -> Any:
    options = settings.S3_OPTIONS
    return boto3.client(
        "s3",
        endpoint_url=options["endpoint_url"],
        region_name=options["region_name"],
        aws_access_key_id=options["access_key"],
        aws_secret_access_key=options["secret_key"],
        config=Config(signature_version="s3v4", s3={"addressing_style": options["addressing_style"] or "auto"}),
    )


def _stored_sha256(client: Any, bucket: str, key: str) -> str | None:
    """The sha256 an earlier run recorded on the object (None: not there yet)."""
    try:
        return str(client.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get("sha256") or "")
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
