"""Media on an S3-compatible bucket (NANOCLONE_MEDIA_STORE=s3), served by moto's S3 server on a real
loopback socket: originals, thumbnails and renditions land in the bucket, files stream or redirect to
a presigned URL after the permission check, a missing object is a 404 and a bucket out of reach a 503
at every door, and local writes of one file from many threads never collide."""

from __future__ import annotations

import io
import threading
import urllib.parse
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from django.core.management import call_command
from django.test import Client
from moto.server import ThreadedMotoServer

from conversations import pipeline
from gallery import bulk, storage
from gallery.models import Image
from tests.conftest import free_port, png_bytes

pytestmark = pytest.mark.django_db

BUCKET = "nanoclone-media"


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    bucket(url).create_bucket(Bucket=BUCKET)
    yield url
    server.stop()


def bucket(url: str) -> Any:
    return boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )


@pytest.fixture
def s3(s3_server: str, settings: Any) -> str:
    """The media store is the bucket, for this test."""
    options = {
        **settings.S3_OPTIONS,
        "bucket_name": BUCKET,
        "endpoint_url": s3_server,
        "region_name": "us-east-1",
        "access_key": "x",
        "secret_key": "y",
        "addressing_style": "path",
    }
    use_bucket(settings, options)
    return s3_server


def use_bucket(settings: Any, options: dict[str, Any]) -> None:
    """What setting NANOCLONE_MEDIA_STORE=s3 does."""
    settings.MEDIA_STORE = "s3"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "gallery.bucket.BucketMedia", "OPTIONS": options},
    }


def objects(url: str) -> set[str]:
    listed = bucket(url).list_objects_v2(Bucket=BUCKET)
    return {item["Key"] for item in listed.get("Contents", [])}


def generated(user: Any, prompt: str) -> Image:
    job = pipeline.start(pipeline.GenerationRequest(user=user, prompt=prompt), pipeline.RunMode.INLINE)
    return Image.objects.get(job=job)


def test_generated_images_and_their_renditions_live_in_the_bucket(
    s3: str, browser: Any, user: Any, add_key: Any, settings: Any, tmp_path: Any
) -> None:
    add_key()
    image = generated(user, "a harbour at night")
    assert image.file in objects(s3)
    assert storage.local_path(image.file) is None and not list((settings.MEDIA_ROOT).glob("**/*.png"))
    original = browser.get(image.get_absolute_url())
    assert original.status_code == 200 and b"".join(original.streaming_content) == storage.read(image.file)
    thumbnail = browser.get(f"/files/{image.id}/thumbnail")
    display = browser.get(f"/files/{image.id}/display")
    assert (thumbnail.status_code, display.status_code) == (200, 200)
    assert {image.thumbnail, storage.display_of(image.file)} <= objects(s3)
    archive = zipfile.ZipFile(io.BytesIO(b"".join(bulk.zip_stream([image]))))
    assert archive.read(archive.namelist()[0]) == storage.read(image.file)
    image.delete()
    Image.delete_unreferenced_files(image.file, image.thumbnail)
    assert not {image.file, image.thumbnail, storage.display_of(image.file)} & objects(s3)


def test_with_redirects_a_checked_request_goes_to_a_short_lived_presigned_url(
    s3: str, browser: Any, user: Any, add_key: Any, settings: Any
) -> None:
    settings.MEDIA_REDIRECT = True
    settings.MEDIA_URL_SECONDS = 120
    add_key()
    image = generated(user, "a lighthouse")
    assert Client().get(image.get_absolute_url()).status_code == 401  # still permission-checked first
    answer = browser.get(image.get_absolute_url() + "?download=1")
    assert answer.status_code == 302
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(answer["Location"]).query)
    assert query["X-Amz-Expires"] == ["120"] and "X-Amz-Signature" in query  # what NanoClone signs
    assert "attachment" in query["response-content-disposition"][0]
    assert int(answer["Cache-Control"].split("max-age=")[1].split(",")[0]) <= 120
    fetched = requests.get(answer["Location"], timeout=10)
    assert fetched.status_code == 200 and fetched.content == storage.read(image.file)


def test_a_missing_object_is_a_404_for_the_file_its_thumbnail_and_display(
    s3: str, browser: Any, user: Any, add_key: Any
) -> None:
    add_key()
    image = generated(user, "a fading photograph")
    bucket(s3).delete_object(Bucket=BUCKET, Key=image.file)
    for path in (image.get_absolute_url(), f"/files/{image.id}/thumbnail", f"/files/{image.id}/display"):
        assert browser.get(path).status_code == 404, path
    archive = zipfile.ZipFile(io.BytesIO(b"".join(bulk.zip_stream([image]))))
    assert archive.namelist() == ["MISSING.txt"] and str(image.pk) in archive.read("MISSING.txt").decode()


def test_a_bucket_out_of_reach_is_a_503_with_retry_after_everywhere(
    s3_server: str, browser: Any, api: Any, user: Any, add_key: Any, settings: Any, client: Any
) -> None:
    add_key()
    options = {**settings.S3_OPTIONS, "bucket_name": BUCKET, "endpoint_url": f"http://127.0.0.1:{free_port()}"}
    options |= {"region_name": "us-east-1", "access_key": "x", "secret_key": "y", "addressing_style": "path"}
    use_bucket(settings, options)  # nothing listens there
    answer = api.post("/api/generate", {"prompt": "nowhere to keep it"}, format="json")
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "store_unavailable"
    assert int(answer["Retry-After"]) >= 1
    image = Image.objects.create(
        user=user, file="images/ab/abc.png", thumbnail="thumbnails/ab/abc.webp", sha256="ab", width=1, height=1, bytes=1
    )
    served = browser.get(image.get_absolute_url())
    assert served.status_code == 503 and served["Retry-After"] == "5"
    health = client.get("/health")
    assert health.status_code == 503 and health.json()["checks"]["store"]["status"].startswith("unreachable")


def test_many_threads_storing_one_file_at_once_never_collide(settings: Any, tmp_path: Any) -> None:
    # Two generations of the same image, or two views making its thumbnail, write one name at once.
    data = png_bytes((128, 128))
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def write() -> None:
        try:
            start.wait()
            storage.write_once("thumbnails/ab/same.webp", data)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=write) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert storage.read("thumbnails/ab/same.webp") == data
    leftovers = [path.name for path in (settings.MEDIA_ROOT / "thumbnails" / "ab").iterdir()]
    assert leftovers == ["same.webp"]  # no temporary file left behind


@pytest.fixture
def browser(client: Any, user: Any) -> Any:
    client.force_login(user)
    return client


def test_media_move_copies_local_media_into_the_bucket_verified_and_can_be_run_again(
    s3_server: str, user: Any, add_key: Any, settings: Any, browser: Any
) -> None:
    add_key()
    image = generated(user, "made on the local disk")  # the default store: local
    storage.ensure_thumbnail(image.file, image.thumbnail)
    settings.S3_OPTIONS = {
        **settings.S3_OPTIONS,
        "bucket_name": BUCKET,
        "endpoint_url": s3_server,
        "region_name": "us-east-1",
        "access_key": "x",
        "secret_key": "y",
        "addressing_style": "path",
        "location": "moved",
    }
    # A run cut off earlier left a wrong object behind: it is copied again, not trusted.
    bucket(s3_server).put_object(Bucket=BUCKET, Key=f"moved/{image.file}", Body=b"half", Metadata={"sha256": "0"})
    out = io.StringIO()
    call_command("media_move", "--to", "s3", stdout=out)
    assert "2 copied and verified, 0 already there, 2 in all" in out.getvalue()
    head = bucket(s3_server).head_object(Bucket=BUCKET, Key=f"moved/{image.file}")
    assert head["Metadata"]["sha256"] == image.sha256
    again = io.StringIO()
    call_command("media_move", "--to", "s3", stdout=again)
    assert "0 copied and verified, 2 already there" in again.getvalue()
    assert settings.MEDIA_STORE == "local" and storage.local_path(image.file) is not None  # nothing switched
    use_bucket(settings, settings.S3_OPTIONS)  # the operator switches
    served = browser.get(image.get_absolute_url())
    assert (
        b"".join(served.streaming_content)
        == storage.read(image.file)
        == bucket(s3_server).get_object(Bucket=BUCKET, Key=f"moved/{image.file}")["Body"].read()
    )
