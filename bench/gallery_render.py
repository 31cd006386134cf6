"""Gallery render time with 10,000 images: GET /gallery (first page) as a logged-in user.

Builds a throwaway data directory with a fresh SQLite database (or uses DATABASE_URL if set),
bulk-creates the images (rows sharing a few real image files and thumbnails), then renders the
first page, the next page (the infinite-scroll fragment) and a prompt search through Django's
test client. Prints median and p95 in milliseconds and the number of SQL queries per page.

    .venv/bin/python bench/gallery_render.py [--images 10000] [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="nanoclone-bench-gallery-")
    os.environ["NANOCLONE_DATA_DIR"] = data_dir
    os.environ.setdefault("NANOCLONE_LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nanoclone.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()

    import datetime as dt
    import io

    import PIL.Image
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from conversations.models import Conversation
    from gallery import storage
    from gallery.models import Image

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench", password="bench-password")
    conversations = Conversation.objects.bulk_create(
        [Conversation(user=user, title=f"Conversation {n}") for n in range(200)]
    )
    files = []
    for n in range(8):
        out = io.BytesIO()
        PIL.Image.new("RGB", (1024, 1024), (30 * n, 80, 200 - 20 * n)).save(out, "PNG")
        files.append(storage.store(out.getvalue()))
    words = ["lighthouse", "fox", "harbour", "castle", "forest", "robot", "banana", "city", "desert", "whale"]
    start = timezone.now()
    started = time.perf_counter()
    rows = []
    for n in range(args.images):
        stored = files[n % len(files)]
        rows.append(
            Image(
                **stored.fields,
                user=user,
                conversation=conversations[n % len(conversations)],
                role=Image.Role.OUTPUT,
                prompt=f"A {words[n % 10]} number {n} in the style of {words[(n // 10) % 10]}",
                model="gemini-3.1-flash-image",
                favorite=n % 17 == 0,
                created_at=start - dt.timedelta(seconds=n),
            )
        )
    Image.objects.bulk_create(rows, batch_size=1000)
    print(f"{args.images} images created in {time.perf_counter() - started:.1f} s ({connection.vendor})")

    client = Client()
    client.force_login(user)
    first = client.get("/gallery")
    assert first.status_code == 200, first.status_code
    cursor = first.content.decode().split('data-next="', 1)[1].split('"', 1)[0]
    cases = {
        "first page": ("/gallery", {}),
        "next page (scroll)": (f"/gallery?after={cursor}&fragment=items", {"HX-Request": "true"}),
        "search 'fox'": ("/gallery?q=fox", {}),
        "favourites": ("/gallery?favorites=1", {}),
    }
    for name, (url, headers) in cases.items():
        client.get(url, headers=headers)  # warm up templates and caches
        timings = []
        for _ in range(args.runs):
            began = time.perf_counter()
            response = client.get(url, headers=headers)
            timings.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200
        with CaptureQueriesContext(connection) as queries:
            client.get(url, headers=headers)
        print(
            f"{name:20} median {statistics.median(timings):6.1f} ms   p95 {percentile(timings, 0.95):6.1f} ms"
            f"   {len(queries)} queries   ({args.runs} runs)"
        )


if __name__ == "__main__":
    main()
