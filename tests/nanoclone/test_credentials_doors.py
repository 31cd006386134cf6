"""One pool of three kinds of Google credential, each behind its own proxy, through every door.

An AI Studio key behind an HTTP proxy (tinyproxy), a Vertex AI express key behind a SOCKS5 proxy
(microsocks) and a service account behind another HTTP proxy: each serves a generation through
each of the seven doors of the live server; a spent AI Studio key fails over to Vertex AI; the
proxies' logs prove the calls went through them; the keys page shows each kind without a secret.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.authtoken.models import Token

from conversations.models import Job
from keys import credentials
from keys.models import ApiKey, UsageRecord
from tests.keys.proxies import RunningProxy, microsocks, tinyproxy
from tests.nanoclone.test_gemini_sweep import DOORS, Doors

pytestmark = pytest.mark.django_db(transaction=True)

STUDIO, EXPRESS, ACCOUNT = ApiKey.Kind.AI_STUDIO, ApiKey.Kind.VERTEX_EXPRESS, ApiKey.Kind.VERTEX_SERVICE_ACCOUNT


@pytest.fixture
def proxies(tmp_path: Path) -> Iterator[dict[str, RunningProxy]]:
    with (
        tinyproxy(tmp_path, "studio", "pw-studio-9") as http,
        microsocks(tmp_path, "express", "pw-express-9") as socks,
        tinyproxy(tmp_path, "account", "pw-account-9") as other,
    ):
        yield {STUDIO: http, EXPRESS: socks, ACCOUNT: other}


def test_three_kinds_behind_their_proxies_serve_every_door_and_fail_over_between_kinds(
    live_app: str,
    add_key: Any,
    emu: Any,
    settings: Any,
    proxies: dict[str, RunningProxy],
    inline_tasks: None,
    shared_memory_db_reads: None,
) -> None:
    settings.CHAT_EXECUTION = "queue"
    settings.JOB_LEASE_SECONDS = 600  # no heartbeat write meeting a request's in the in-memory database
    # The AI Studio key's project allows as many images a day as there are doors; then it is spent.
    studio = add_key(f"emu-quota{len(DOORS)}-{uuid.uuid4().hex[:8]}", proxy=proxies[STUDIO].url)
    express = add_key(f"emu-ok-express-{uuid.uuid4().hex[:8]}", kind=EXPRESS, proxy=proxies[EXPRESS].url)
    account = emu.vertex.service_account("proj-doors")
    account_key = add_key(json.dumps(account), kind=ACCOUNT, proxy=proxies[ACCOUNT].url)
    pool = {STUDIO: studio, EXPRESS: express, ACCOUNT: account_key}

    user = get_user_model().objects.create_user("doors", password="pw-doors-1", is_staff=True)
    browser = Client()
    browser.force_login(user)
    doors = Doors(live_app, Token.objects.create(user=user).key, {"sessionid": browser.cookies["sessionid"].value})

    wrong = []
    for door, (source, _) in DOORS.items():
        for kind, credential in pool.items():
            ApiKey.objects.update(enabled=False)
            ApiKey.objects.filter(pk=credential.pk).update(enabled=True)
            seen = getattr(doors, door)(f"a lighthouse via {kind}")
            job = Job.objects.filter(user=user, source=source).order_by("-created_at").first()
            if job is None or job.state != Job.State.SUCCEEDED:
                wrong.append(f"{kind} through {door}: {job and job.state} {seen.statuses} {seen.text[:200]}")
                continue
            used = list(UsageRecord.objects.filter(job_id=str(job.pk)).values_list("kind", "outcome"))
            if used != [(kind, UsageRecord.Outcome.IMAGE)]:
                wrong.append(f"{kind} through {door}: the ledger says {used}")
    assert not wrong, "\n".join(wrong)

    # Each credential called through its own proxy, the service account's sign-in included.
    emulator = emu.url.removeprefix("http://")
    assert all(proxy.reached(emulator) for proxy in proxies.values())
    assert "/token" in proxies[ACCOUNT].seen() and "/token" not in proxies[STUDIO].seen()

    # All three in the pool, the AI Studio key used least: its project's quota is spent, a 429, and
    # the same request goes on with a Vertex AI credential.
    ApiKey.objects.update(enabled=True)
    ApiKey.objects.exclude(pk=studio.pk).update(count_today=len(DOORS) + 1)
    answer = doors.native("a lighthouse, failing over")
    assert answer.statuses == [200], answer.text
    job = Job.objects.filter(user=user, source="api").order_by("-created_at").first()
    assert job is not None
    tries = list(UsageRecord.objects.filter(job_id=str(job.pk)).order_by("id").values_list("kind", "outcome"))
    assert tries[0] == (STUDIO, UsageRecord.Outcome.EXHAUSTED)
    assert tries[1][0] in (EXPRESS, ACCOUNT) and tries[1][1] == UsageRecord.Outcome.IMAGE

    # The keys page shows each kind, its project and location, its proxy without the password.
    page = doors.chat.get(f"{live_app}/keys", timeout=30).text
    assert "AI Studio API key" in page and "Vertex AI express-mode API key" in page
    assert "Vertex AI service account · global" in page and account["client_email"] in page and "proj-doors" in page
    shown = [credentials.proxy(proxy.url).shown for proxy in proxies.values()]  # type: ignore[union-attr]
    assert all(proxy in page for proxy in shown) and shown[1].startswith("socks5://express@127.0.0.1:")
    assert not any(word in page for word in ("pw-studio-9", "pw-express-9", "pw-account-9"))
    assert account["private_key"].splitlines()[1] not in page
    assert requests.get(f"{live_app}/health", timeout=10).json()["checks"]["keys"]["by_kind"] == {
        STUDIO: {"total": 1, "usable": 0},  # resting: its day's quota is spent
        EXPRESS: {"total": 1, "usable": 1},
        ACCOUNT: {"total": 1, "usable": 1},
    }
