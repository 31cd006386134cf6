"""Every shape of Gemini's answers in the wild (docs/gemini-answers.md), through every door over HTTP.

One live server, one pool of one key per try: the native API, a compatible dialect (evolink), the
jobs API, the Gemini API, the OpenAI Images API, MCP and the chat. For each shape and door the job
ends as the outcome table says, the door answers with the status its table row gives and a
readable message, and nothing anywhere is a 500 or NanoClone's "internal error".
"""

from __future__ import annotations

import html
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.authtoken.models import Token

from conversations.models import Job
from keys.models import ApiKey
from nanoclone.templatetags.chat import failure_title
from tests.nanoclone.test_mcp import over_http, text_of

pytestmark = [pytest.mark.once, pytest.mark.django_db(transaction=True)]

SUCCEEDED = "succeeded"
REFUSAL_CODES = {"blocked", "image_safety", "no_image"}


@dataclass(frozen=True)
class Shape:
    name: str
    key: str = "emu-ok-"  # the key's prefix (the emulator's misbehaviour by key)
    marker: str = ""  # the prompt's marker (its misbehaviour by prompt)
    outcome: str = SUCCEEDED  # how the job ends: succeeded, or its error code
    retry_after: bool = False  # a failure that says when to come back

    @property
    def prompt(self) -> str:
        return f"a lighthouse at dusk {self.marker}".strip()


FINISH_REASONS = {
    "IMAGE_SAFETY": "image_safety",
    "IMAGE_PROHIBITED_CONTENT": "image_safety",
    "IMAGE_OTHER": "no_image",
    "NO_IMAGE": "no_image",
    "IMAGE_RECITATION": "no_image",
    "RECITATION": "no_image",
    "PROHIBITED_CONTENT": "blocked",
    "SPII": "blocked",
    "BLOCKLIST": "blocked",
    "MALFORMED_FUNCTION_CALL": "no_image",
    "OTHER": "no_image",
}
SHAPES = [
    Shape("a plain answer"),
    *(Shape(f"image {marker}", marker=marker) for marker in ("[mime-wrong]", "[mime-missing]", "[datauri]")),
    *(Shape(f"answer {marker}", marker=marker) for marker in ("[two-images]", "[odd-fields]", "[bad-signature]")),
    *(Shape(f"answer {marker}", marker=marker) for marker in ("[list]", "[chunks]")),
    *(
        Shape(f"unreadable {marker}", marker=marker, outcome="upstream_error")
        for marker in ("[cutoff]", "[cutoff-odd]", "[garbage]", "[html]", "[empty]")
    ),
    *(
        Shape(f"finishReason {reason}", marker=f"[finish:{reason}]", outcome=code)
        for reason, code in FINISH_REASONS.items()
    ),
    Shape("IMAGE_SAFETY through a relay", marker="[imagesafety]", outcome="image_safety"),
    Shape("blockReason", marker="[block]", outcome="blocked"),
    Shape("blockReason BLOCKLIST", marker="[block:BLOCKLIST]", outcome="blocked"),
    Shape("text only", marker="[noimage]", outcome="no_image"),
    *(Shape(f"key {prefix}", key=prefix, outcome="no_usable_key") for prefix in ("emu-invalid-", "emu-leaked-")),
    *(Shape(f"key {prefix}", key=prefix, outcome="no_usable_key") for prefix in ("emu-denied-", "emu-disabled-")),
    Shape("a refused location", key="emu-location-", outcome="location_refused"),
    Shape("a retired model", key="emu-retired-", outcome="request_rejected"),
    *(
        Shape(f"upstream {prefix}", key=prefix, outcome="upstream_error")
        for prefix in ("emu-500-", "emu-503-", "emu-502html-", "emu-403html-", "emu-500empty-")
    ),
    *(
        Shape(f"429 {prefix}", key=prefix, outcome="no_usable_key", retry_after=True)
        for prefix in ("emu-429-", "emu-429bare-", "emu-429day-", "emu-429family-", "emu-429list-")
    ),
    *(
        Shape(f"429 {prefix}", key=prefix, outcome="no_usable_key", retry_after=True)
        for prefix in ("emu-429html-", "emu-rpmstuck-")
    ),
    Shape("429 limit 0", key="emu-limit0-", outcome="no_usable_key"),
]


def native_status(shape: Shape) -> int:
    if shape.outcome == SUCCEEDED:
        return 200
    return Job.ErrorCode(shape.outcome).http_status


def gemini_status(shape: Shape) -> int:
    if shape.outcome == SUCCEEDED or shape.outcome in REFUSAL_CODES:
        return 200  # Gemini's refusals are 200s with a finishReason or blockReason
    if shape.outcome == "no_usable_key":
        return 429 if shape.retry_after else 503
    return {"upstream_error": 503}.get(shape.outcome, native_status(shape))


def openai_status(shape: Shape) -> int:
    if shape.outcome in ("blocked", "image_safety"):
        return 400  # moderation_blocked
    if shape.outcome == "no_usable_key":
        return 429 if shape.retry_after else 503
    return native_status(shape)


@dataclass
class Seen:
    statuses: list[int]  # every HTTP status the door answered on the way
    text: str  # what it said, as a person or program reads it


class Doors:
    """One user's calls through each door of the live server."""

    def __init__(self, url: str, token: str, chat_cookies: dict[str, str]) -> None:
        self.url, self.token = url, token
        self.headers = {"Authorization": f"Bearer {token}"}
        self.chat = requests.Session()
        self.chat.cookies.update(chat_cookies)

    def native(self, prompt: str) -> Seen:
        answer = requests.post(f"{self.url}/api/generate", json={"prompt": prompt}, headers=self.headers, timeout=60)
        return Seen([answer.status_code], answer.text)

    def gemini(self, prompt: str) -> Seen:
        path = "/v1beta/models/gemini-nano-banana-2.1:generateContent"
        body = {"contents": [{"parts": [{"text": prompt}]}]}
        answer = requests.post(f"{self.url}{path}", json=body, headers={"x-goog-api-key": self.token}, timeout=60)
        return Seen([answer.status_code], answer.text)

    def openai(self, prompt: str) -> Seen:
        body = {"model": "gemini-nano-banana-2.1", "prompt": prompt, "size": "1024x1024"}
        answer = requests.post(f"{self.url}/openai/v1/images/generations", json=body, headers=self.headers, timeout=60)
        return Seen([answer.status_code], answer.text)

    def evolink(self, prompt: str) -> Seen:
        body = {"model": "gemini-2.5-flash-image", "prompt": prompt}
        created = requests.post(f"{self.url}/v1/images/generations", json=body, headers=self.headers, timeout=60)
        if created.status_code != 200:
            return Seen([created.status_code], created.text)
        task = self.until(lambda: self.get(f"/v1/tasks/{created.json()['id']}"), ("completed", "failed"))
        return Seen([created.status_code, task.status_code], task.text)

    def jobs(self, prompt: str) -> Seen:
        created = requests.post(
            f"{self.url}/api/images/generate", json={"prompt": prompt}, headers=self.headers, timeout=60
        )
        if created.status_code != 202:
            return Seen([created.status_code], created.text)
        result = self.until(lambda: self.get(f"/api/images/result/{created.json()['job_id']}"), ("COMPLETED", "FAILED"))
        return Seen([created.status_code, result.status_code], result.text)

    def mcp(self, prompt: str) -> Seen:
        _, (result,) = over_http(self.url, self.token, [("generate_image", {"prompt": prompt})])
        return Seen([200], text_of(result))

    def page(self, prompt: str) -> Seen:
        self.chat.get(f"{self.url}/", timeout=30)  # the CSRF cookie
        csrf = {"X-CSRFToken": self.chat.cookies["csrftoken"] or "", "HX-Request": "true", "Referer": f"{self.url}/"}
        sent = self.chat.post(f"{self.url}/c/send", data={"prompt": prompt}, headers=csrf, timeout=60)
        found = re.search(r'id="answer-([0-9a-f-]{36})"', sent.text)
        if sent.status_code != 200 or found is None:
            return Seen([sent.status_code], sent.text)
        job_id = found.group(1)
        deadline = time.monotonic() + 60
        while not Job.objects.get(pk=job_id).finished and time.monotonic() < deadline:
            time.sleep(0.05)
        turn = self.chat.get(f"{self.url}/c/turns/{job_id}", timeout=30)
        return Seen([sent.status_code, turn.status_code], html.unescape(turn.text))

    def get(self, path: str) -> requests.Response:
        return requests.get(f"{self.url}{path}", headers=self.headers, timeout=30)

    @staticmethod
    def until(poll: Callable[[], requests.Response], done: tuple[str, ...]) -> requests.Response:
        deadline = time.monotonic() + 60
        while True:
            answer = poll()
            if answer.status_code >= 500 or answer.json().get("status") in done or time.monotonic() > deadline:
                return answer
            time.sleep(0.05)


DOORS: dict[str, tuple[str, Callable[[Shape], int] | None]] = {
    # door: (Job.source, the status its synchronous answer must have; None: async, the job decides)
    "native": ("api", native_status),
    "gemini": ("gemini", gemini_status),
    "openai": ("openai", openai_status),
    "evolink": ("evolink", None),
    "jobs": ("jobs", None),
    "mcp": ("mcp", None),
    "page": ("chat", None),
}


def test_every_shape_through_every_door_ends_as_the_outcome_table_says_and_never_in_a_500(
    live_app: str, add_key: Any, settings: Any, inline_tasks: None, shared_memory_db_reads: None
) -> None:
    settings.MAX_QUEUE_WAIT = 0  # a rest's end isn't waited for here: every 429 answers at once
    settings.CHAT_EXECUTION = "queue"  # the default; with django-q2 in sync mode a turn runs as it is sent
    settings.NANOCLONE_FETCH_ALLOW_LOOPBACK = True
    # No lease renewal in the middle: the heartbeat's write would meet a request's in the tests'
    # in-memory database, which makes a second writer fail at once instead of waiting.
    settings.JOB_LEASE_SECONDS = 600
    user = get_user_model().objects.create_user("sweeper", password="pw-sweeper-1", is_staff=True)
    browser = Client()
    browser.force_login(user)
    doors = Doors(live_app, Token.objects.create(user=user).key, {"sessionid": browser.cookies["sessionid"].value})
    wrong: list[str] = []
    for shape in SHAPES:
        for door, (source, status_of) in DOORS.items():
            ApiKey.objects.all().delete()
            add_key(f"{shape.key}{uuid.uuid4().hex[:8]}")
            seen = getattr(doors, door)(shape.prompt)
            job = Job.objects.filter(user=user, source=source).order_by("-created_at").first()
            where = f"{shape.name} through {door}"
            said = seen.text.replace('\\"', '"')  # as a reader sees it, out of its JSON string
            if 500 in seen.statuses or "nanoclone hit an internal error" in said.lower():
                wrong.append(f"{where}: a 500 or an internal error: {seen.statuses} {seen.text[:300]}")
                continue
            if job is None or not job.finished:
                wrong.append(
                    f"{where}: no finished job ({job and job.state}); answered {seen.statuses} {seen.text[:200]}"
                )
                continue
            ended = SUCCEEDED if job.state == Job.State.SUCCEEDED else job.error_code
            if ended != shape.outcome:
                wrong.append(f"{where}: ended {ended} ({job.error[:160]}), the table says {shape.outcome}")
            if status_of is not None and seen.statuses[0] != status_of(shape):
                wrong.append(f"{where}: answered {seen.statuses[0]}, the table says {status_of(shape)}")
            readable = job.error[:40] in said or (job.refusal or {}).get("finishReason", "-") in said
            if door == "page":  # the chat's card says it in its own words, without Google's codes
                readable = readable or html.unescape(failure_title(job)) in said
            if ended != SUCCEEDED and not readable:
                wrong.append(f"{where}: the answer doesn't say why ({job.error[:60]}): {seen.text[:200]}")
            if ended != SUCCEEDED and shape.retry_after != (job.retry_after is not None):
                wrong.append(f"{where}: retry_after {job.retry_after}, the table says {shape.retry_after}")
    assert not wrong, f"{len(wrong)} of {len(SHAPES) * len(DOORS)}:\n" + "\n".join(wrong)
