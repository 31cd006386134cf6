"""The Batch API: batchGenerateContent's long-running batches, with get, list, cancel and delete.

A batch is pending, running after a third of the server's `batch_seconds`, and ended once they have
passed: its items are then answered by generateContent's own function, inline or into a JSONL file.
A marker in the first item's prompt chooses another end (`[batchexpire]`, `[batchfail]`);
`[itemerror]` fails one item; a key with `batch429` in it has no batch quota left.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from keys.gemini.emulator import wild
from keys.gemini.emulator.errors import HELP_URL, JSON, GeminiError, invalid_argument
from keys.gemini.emulator.files import NOT_FOUND, Files, Reply, json_object, timestamp
from keys.gemini.emulator.generate import either, generate, last_user_text

_CREATE_PATH = re.compile(r"^/(v1|v1beta)/models/([^/:]+):batchGenerateContent$")
_BATCH_PATH = re.compile(r"^/(v1|v1beta)/batches(?:/([^/:]+)(:cancel)?)?$")
# Google takes inline requests up to 20 MB for the whole create request; bigger batches go in a file.
INLINE_LIMIT_BYTES = 20 * 1024 * 1024
_TYPES = "type.googleapis.com/google.ai.generativelanguage.v1main."
_RATE_LIMITS = "https://ai.google.dev/gemini-api/docs/rate-limits"

PENDING, RUNNING, SUCCEEDED = "BATCH_STATE_PENDING", "BATCH_STATE_RUNNING", "BATCH_STATE_SUCCEEDED"
FAILED, CANCELLED, EXPIRED = "BATCH_STATE_FAILED", "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED"


def _batch_quota_spent() -> GeminiError:
    # The body a batch create got in a public CI log: no quota id, only a Help link.
    message = (
        "You exceeded your current quota, please check your plan and billing details. For more information on "
        f"this error, head to: {_RATE_LIMITS}. To monitor your current usage, head to: https://ai.dev/rate-limit. "
    )
    links = [{"description": "Learn more about Gemini API quotas", "url": _RATE_LIMITS}]
    return GeminiError(
        429, "RESOURCE_EXHAUSTED", message, [{"@type": "type.googleapis.com/google.rpc.Help", "links": links}]
    )


@dataclass
class Batch:
    name: str  # batches/{id}
    model: str
    display_name: str
    key: str  # who created it
    items: list[JSON]  # inline: {"request", "metadata"}; from a JSONL file: {"key", "request"}
    file_name: str = ""  # the JSONL input, for a file-based batch
    created: float = field(default_factory=time.time)
    # Set once, under `lock`, when it ends: its end state, and what that leaves.
    ended: float | None = None
    state: str = ""
    output: JSON | None = None
    error: JSON | None = None
    failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Batches:
    """The batches created since the server started."""

    def __init__(self, files: Files, record: Callable[[JSON], None]) -> None:
        self.files = files
        self._record = record  # the server's request log
        self._lock = threading.Lock()
        self._batches: dict[str, Batch] = {}  # in creation order

    def answer(self, method: str, url: str, body: bytes, key: str | None, batch_seconds: float) -> Reply | None:
        """The answer to a Batch API request, or None for a path that is not the Batch API's."""
        path, query = urlsplit(url).path, parse_qs(urlsplit(url).query)
        if method == "POST" and (create := _CREATE_PATH.match(path)):
            return self._create(create.group(1), create.group(2), body, key, batch_seconds)
        match = _BATCH_PATH.match(path)
        if match is None:
            return None
        _version, batch_id, cancel = match.groups()
        # GET batches (a list), GET and DELETE batches/{id}, POST batches/{id}:cancel.
        if method not in (("GET",) if batch_id is None else ("POST",) if cancel else ("GET", "DELETE")):
            return None
        try:
            if (error := wild.key_error(key, "")) and error.code != 429:
                raise error
            if batch_id is None:
                return 200, self._list(query, batch_seconds), {}
            with self._lock:
                name = f"batches/{batch_id}"
                batch = self._batches.pop(name, None) if method == "DELETE" else self._batches.get(name)
            if batch is None:
                raise NOT_FOUND
            if method == "GET":
                return 200, self._operation(batch, batch_seconds), {}
            if cancel:
                with batch.lock:
                    self._settle(batch, batch_seconds)
                    if batch.ended is None:
                        batch.ended, batch.state = time.time(), CANCELLED
            return 200, {}, {}
        except GeminiError as error:
            return error.code, error.body, {}

    def _create(self, version: str, model: str, body: bytes, key: str | None, batch_seconds: float) -> Reply:
        record: JSON = {
            "time": datetime.now(UTC).isoformat(),
            "key_suffix": (key or "")[-4:],
            "model": model,
            "api_version": version,
            "api": "batch",
            "project": "",
            "items": 0,
            "prompt": "",
            "status": 500,
        }
        try:
            batch = self._enqueue(model, body, key or "", record)
            reply: Reply = 200, self._operation(batch, batch_seconds), {}
        except GeminiError as error:
            reply = error.code, error.body, {}
        record["status"] = reply[0]
        self._record(record)
        return reply

    def _enqueue(self, model: str, body: bytes, key: str, record: JSON) -> Batch:
        if error := wild.key_error(key, model):
            raise error
        if len(body) > INLINE_LIMIT_BYTES:
            raise invalid_argument(f"Request payload size exceeds the limit: {INLINE_LIMIT_BYTES} bytes.")
        asked = json_object(body).get("batch")
        asked = asked if isinstance(asked, dict) else {}
        source = either(asked, "inputConfig")
        source = source if isinstance(source, dict) else {}
        inline = source.get("requests")
        requests = inline.get("requests") if isinstance(inline, dict) else None
        file_name = either(source, "fileName")
        if isinstance(requests, list) and requests:
            items = [item if isinstance(item, dict) else {} for item in requests]
        elif isinstance(file_name, str) and (stored := self.files.get(file_name)) is not None:
            items = [_jsonl_item(line) for line in bytes(stored.data).splitlines() if line.strip()]
        else:
            raise invalid_argument(
                "* GenerateContentBatch.input_config: either requests or the file_name of an uploaded file is required"
            )
        record["items"], record["prompt"] = len(items), _prompt(items[0]) if items else ""
        if "batch429" in key:
            raise _batch_quota_spent()  # batches have their own quota: online calls still work
        batch = Batch(
            f"batches/{secrets.token_hex(16)}",
            model,
            str(either(asked, "displayName") or ""),
            key,
            items,
            file_name if isinstance(file_name, str) and not requests else "",
        )
        with self._lock:
            self._batches[batch.name] = batch
        return batch

    def _list(self, query: dict[str, list[str]], batch_seconds: float) -> JSON:
        try:
            size = min(max(int(query.get("pageSize", ["50"])[0]), 1), 1000)
            start = int(query.get("pageToken", ["0"])[0] or 0)
        except ValueError as exc:
            raise invalid_argument("Invalid page size or page token.") from exc
        with self._lock:
            newest_first = list(reversed(self._batches.values()))
        listed: JSON = {"operations": [self._operation(b, batch_seconds) for b in newest_first[start : start + size]]}
        if start + size < len(newest_first):
            listed["nextPageToken"] = str(start + size)
        return listed

    def _operation(self, batch: Batch, batch_seconds: float) -> JSON:
        """The batch as Google's long-running Operation: `metadata` is the batch, `response` its output."""
        with batch.lock:
            self._settle(batch, batch_seconds)
            count = str(len(batch.items))
            stats = {"requestCount": count, "pendingRequestCount": count}
            if batch.ended is not None:
                state, updated = batch.state, batch.ended
                stats = {"requestCount": count}
                if batch.output is not None:
                    # Counts are int64s, so strings on the wire; proto3 leaves zeros out.
                    for name, n in (
                        ("successfulRequestCount", len(batch.items) - batch.failures),
                        ("failedRequestCount", batch.failures),
                    ):
                        if n:
                            stats[name] = str(n)
            elif time.time() >= batch.created + batch_seconds / 3:
                state, updated = RUNNING, batch.created + batch_seconds / 3
            else:
                state, updated = PENDING, batch.created
            metadata: JSON = {
                "@type": _TYPES + "GenerateContentBatch",
                "model": f"models/{batch.model}",
                "displayName": batch.display_name,
                "createTime": timestamp(batch.created),
                "updateTime": timestamp(updated),
                "batchStats": stats,
                "state": state,
                "name": batch.name,
            }
            if batch.file_name:
                metadata["inputConfig"] = {"fileName": batch.file_name}
            operation: JSON = {"name": batch.name, "metadata": metadata}
            if batch.ended is not None:
                metadata["endTime"] = timestamp(batch.ended)
                operation["done"] = True
            if batch.output is not None:
                metadata["output"] = batch.output
                operation["response"] = {"@type": _TYPES + "GenerateContentBatchOutput", **batch.output}
            if batch.error is not None:
                operation["error"] = batch.error
            return operation

    def _settle(self, batch: Batch, batch_seconds: float) -> None:
        """End the batch once its turnaround has passed, answering its items then: once, and only when
        asked (the caller holds its lock), so a long turnaround costs nothing while it waits."""
        if batch.ended is not None or time.time() < batch.created + batch_seconds:
            return
        batch.ended = batch.created + batch_seconds
        first = _prompt(batch.items[0]) if batch.items else ""
        if "[batchexpire]" in first:
            batch.state = EXPIRED
            return
        if "[batchfail]" in first:
            batch.state = FAILED
            message = f"An internal error has occurred. Please retry or report in {HELP_URL}"
            batch.error = {"code": 500, "message": message, "status": "INTERNAL"}
            return
        batch.state = SUCCEEDED
        answers = [_answer(batch.model, item) for item in batch.items]
        batch.failures = sum("error" in answer for answer in answers)
        if not batch.file_name:
            inlined = [
                answer | {"metadata": item["metadata"]} if "metadata" in item else answer
                for item, answer in zip(batch.items, answers, strict=True)
            ]
            batch.output = {"inlinedResponses": {"inlinedResponses": inlined}}
            return
        # A file-based batch answers into a JSONL file, one line per input line, keyed as it was.
        lines = [
            json.dumps({"key": item.get("key"), **answer}) for item, answer in zip(batch.items, answers, strict=True)
        ]
        name = f"files/batch-{batch.name.removeprefix('batches/')}"
        stored = self.files.add(name, "".join(f"{line}\n" for line in lines).encode(), "application/jsonl")
        batch.output = {"responsesFile": stored.name}


def _jsonl_item(line: bytes) -> JSON:
    """One line of a JSONL input, `{"key": ..., "request": {...}}`; a line that is no JSON object is
    an item without a request (it gets its own error)."""
    try:
        item = json.loads(line)
    except ValueError:
        return {}
    return item if isinstance(item, dict) else {}


def _prompt(item: JSON) -> str:
    request = item.get("request")
    contents = request.get("contents") if isinstance(request, dict) else None
    return last_user_text([c for c in contents if isinstance(c, dict)]) if isinstance(contents, list) else ""


def _answer(model: str, item: JSON) -> JSON:
    """An item's answer as generateContent gives it (`{"response": ...}`), or its own error (`{"error": ...}`)."""
    request: Any = item.get("request")
    try:
        if not isinstance(request, dict):
            raise invalid_argument("* GenerateContentBatch: a batch item needs its GenerateContentRequest in `request`")
        prompt = _prompt(item)
        if "[itemerror]" in prompt:
            raise GeminiError(500, "INTERNAL", f"An internal error has occurred. Please retry or report in {HELP_URL}")
        answer = generate(model, request)
        # Shapes that are no JSON object (a relay's page, a list of chunks) don't fit in a batch's output.
        shaped = wild.reshape(answer, prompt)
        return {"response": shaped if isinstance(shaped, dict) else answer}
    except GeminiError as error:
        status = error.body["error"]["status"] if isinstance(error.body, dict) else ""
        return {"error": {"code": error.code, "message": str(error), "status": status}}
