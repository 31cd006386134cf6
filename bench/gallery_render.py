"""Gallery and /api/images time with 100,000 images, every filter, as a logged-in user.

Builds a throwaway data directory with a fresh SQLite database (or uses DATABASE_URL if set),
bulk-creates the images (rows sharing a few real image files and thumbnails), then times through
Django's test client: the gallery's first page, the next page (the infinite-scroll fragment), a
page deep in the scroll, each filter (prompt search: the page, then the count it asks for;
favourites, conversation, model, dates), and /api/images: its first page, its last page, a
conversation's images. Prints median and p95 in milliseconds and the number of SQL queries per
request.

    .venv/bin/python bench/gallery_render.py [--images 100000] [--runs 30]
"""

from __future__ import annotations

import argparse
import atexit
import base64
import os
import shutil
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
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="nanoclone-bench-gallery-")
    atexit.register(shutil.rmtree, data_dir, ignore_errors=True)  # 120 MB at 100,000 images
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
    from rest_framework.authtoken.models import Token

    from conversations.models import Conversation
    from gallery import browse, storage
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
                model="gemini-3-pro-image" if n % 50 == 0 else "gemini-3.1-flash-image",
                favorite=n % 17 == 0,
                created_at=start - dt.timedelta(seconds=n),
            )
        )
    Image.objects.bulk_create(rows, batch_size=1000)
    print(f"{args.runs} runs each; CPU is this process's (the server's and SQLite's) time, steadier than wall time")
    print(f"{args.images} images created in {time.perf_counter() - started:.1f} s ({connection.vendor})")

    client = Client()
    client.force_login(user)
    first = client.get("/gallery")
    assert first.status_code == 200, first.status_code
    cursor = first.content.decode().split('data-next="', 1)[1].split('"', 1)[0]
    deep = Image.objects.filter(user=user).order_by("-created_at", "-id")[args.images - 100]
    deep_cursor = browse.encode_cursor(deep)
    token = Token.objects.create(user=user).key
    api = {"Authorization": f"Bearer {token}"}
    listing = client.get("/api/images?page_size=50", headers=api).json()["data"]
    # The last page as the API leads to it: its `next` links (keyset) when it has them, else ?page=N.
    last_page = f"/api/images?page_size=50&page={listing['pages']}"
    if "cursor=" in (listing["next"] or ""):
        before_last = Image.objects.filter(user=user).order_by("-created_at", "-id")[(listing["pages"] - 1) * 50 - 1]
        token = f"n{listing['pages']}.{browse.encode_cursor(before_last)}"
        last_page = f"/api/images?page_size=50&cursor={base64.urlsafe_b64encode(token.encode()).decode()}"
    conversation = conversations[7].pk
    day = (start - dt.timedelta(seconds=args.images // 2)).date()
    cases = {
        "first page": ("/gallery", {}),
        "next page (scroll)": (f"/gallery?after={cursor}&fragment=items", {"HX-Request": "true"}),
        "deep page (scroll)": (f"/gallery?after={deep_cursor}&fragment=items", {"HX-Request": "true"}),
        "search 'fox'": ("/gallery?q=fox", {}),
        "search 'fox', count": ("/gallery?q=fox&fragment=count", {"HX-Request": "true"}),
        "search 'fox 4217'": ("/gallery?q=fox+4217", {}),
        "search 'fox 4217', cnt": ("/gallery?q=fox+4217&fragment=count", {"HX-Request": "true"}),
        "search, no match": ("/gallery?q=zebra", {}),
        "favourites": ("/gallery?favorites=1", {}),
        "conversation": (f"/gallery?conversation={conversation}", {}),
        "model": ("/gallery?model=gemini-3-pro-image", {}),
        "one day": (f"/gallery?from={day}&to={day}", {}),
        "API first page": ("/api/images?page_size=50", api),
        "API last page": (last_page, api),
        "API conversation": (f"/api/images?conversation_id={conversation}", api),
    }
    for url, headers in cases.values():
        client.get(url, headers=headers)
    # What a server's first requests do: its connections close (Django's test client keeps this one
    # open), and the SQLite backend's PRAGMA optimize gathers the statistics the planner needs.
    connection.close()
    for name, (url, headers) in cases.items():
        client.get(url, headers=headers)  # warm up templates and caches
        timings, cpu = [], []
        for _ in range(args.runs):
            began, began_cpu = time.perf_counter(), time.process_time()
            response = client.get(url, headers=headers)
            timings.append((time.perf_counter() - began) * 1000)
            cpu.append((time.process_time() - began_cpu) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        with CaptureQueriesContext(connection) as queries:
            client.get(url, headers=headers)
        print(
            f"{name:22} median {statistics.median(timings):6.1f} ms   p95 {percentile(timings, 0.95):6.1f} ms"
            f"   CPU median {statistics.median(cpu):6.1f} ms   {len(queries)} queries"
        )


if __name__ == "__main__":
    main()
