"""The Files API: uploads by Google's resumable protocol, a file's metadata, and its bytes (a batch's
JSONL input, and the JSONL a file-based batch answers into). Files live in memory."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from email.message import Message
from urllib.parse import parse_qs, urlsplit

from keys.gemini.emulator import wild
from keys.gemini.emulator.errors import JSON, Body, GeminiError, invalid_argument
from keys.gemini.emulator.generate import either

# What every answer here is: status, body, extra headers (a Content-Type among them for raw bytes).
Reply = tuple[int, Body | None, dict[str, str]]

_UPLOAD_PATH = re.compile(r"^/upload/(v1|v1beta)/files$")
_FILE_PATH = re.compile(r"^(?:/download)?/(v1|v1beta)/files/([^/:]+)(:download)?$")
# Google keeps a file 48 hours.
_KEPT_SECONDS = 48 * 3600
NOT_FOUND = GeminiError(404, "NOT_FOUND", "Requested entity was not found.")


def timestamp(moment: float) -> str:
    """Google's RFC 3339 time, in UTC with a Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{int(moment % 1 * 1e6):06d}Z"


@dataclass
class StoredFile:
    name: str  # files/{id}
    display_name: str
    mime_type: str
    data: bytearray = field(default_factory=bytearray)
    created: float = field(default_factory=time.time)
    source: str = "UPLOADED"  # or GENERATED: a batch's output

    def resource(self, base_url: str) -> JSON:
        """The File as Gemini describes it."""
        digest = hashlib.sha256(self.data).hexdigest()
        resource: JSON = {
            "name": self.name,
            "displayName": self.display_name,
            "mimeType": self.mime_type,
            "sizeBytes": str(len(self.data)),
            "createTime": timestamp(self.created),
            "updateTime": timestamp(self.created),
            "expirationTime": timestamp(self.created + _KEPT_SECONDS),
            # Google sends the hex digest, base64-encoded.
            "sha256Hash": base64.b64encode(digest.encode()).decode(),
            "uri": f"{base_url}/v1beta/{self.name}",
            "state": "ACTIVE",
            "source": self.source,
        }
        if self.source == "GENERATED":
            resource["downloadUri"] = f"{base_url}/download/v1beta/{self.name}:download?alt=media"
        return resource


class Files:
    """The files uploaded or generated since the server started, and the uploads under way."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._lock = threading.Lock()
        self._files: dict[str, StoredFile] = {}
        self._uploads: dict[str, StoredFile] = {}  # by upload id: files whose bytes are still coming

    def get(self, name: str) -> StoredFile | None:
        with self._lock:
            return self._files.get(name)

    def add(self, name: str, data: bytes, mime_type: str, display_name: str = "") -> StoredFile:
        """Keep a file the emulator wrote itself (a batch's responses)."""
        stored = StoredFile(name, display_name or name, mime_type, bytearray(data), source="GENERATED")
        with self._lock:
            self._files[name] = stored
        return stored

    def answer(self, method: str, url: str, headers: Message, body: bytes, key: str | None) -> Reply | None:
        """The answer to a Files API request, or None for a path that is not the Files API's."""
        path, query = urlsplit(url).path, parse_qs(urlsplit(url).query)
        try:
            if method == "POST" and _UPLOAD_PATH.match(path):
                return self._upload(query.get("upload_id", [""])[0], headers, body, key)
            if not (match := _FILE_PATH.match(path)) or method not in ("GET", "DELETE"):
                return None
            if (error := wild.key_error(key, "")) and error.code != 429:
                raise error
            name, download = f"files/{match.group(2)}", bool(match.group(3))
            with self._lock:
                stored = self._files.pop(name, None) if method == "DELETE" else self._files.get(name)
            if stored is None:
                raise NOT_FOUND
            if method == "DELETE":
                return 200, {}, {}
            if download:
                return 200, bytes(stored.data), {"Content-Type": stored.mime_type}
            return 200, stored.resource(self.base_url), {}
        except GeminiError as error:
            return error.code, error.body, {}

    def _upload(self, upload_id: str, headers: Message, body: bytes, key: str | None) -> Reply:
        command = (headers.get("X-Goog-Upload-Command") or "").lower()
        if command == "start":
            # The first step names the file and asks where to send its bytes.
            if (error := wild.key_error(key, "")) and error.code != 429:
                raise error
            asked = json_object(body).get("file")
            asked = asked if isinstance(asked, dict) else {}
            name = str(asked.get("name") or f"files/{secrets.token_hex(6)}")
            mime_type = str(either(asked, "mimeType") or headers.get("X-Goog-Upload-Header-Content-Type") or "")
            upload_id = secrets.token_urlsafe(24)
            with self._lock:
                if name in self._files:
                    raise GeminiError(409, "ALREADY_EXISTS", f"File {name} already exists.")
                self._uploads[upload_id] = StoredFile(name, str(either(asked, "displayName") or ""), mime_type)
            upload_url = f"{self.base_url}/upload/v1beta/files?upload_id={upload_id}&upload_protocol=resumable"
            return 200, None, {"X-Goog-Upload-URL": upload_url, "X-Goog-Upload-Status": "active"}
        # Then the bytes, in chunks; the last one finalizes. The upload id is the credential, as Google's is.
        with self._lock:
            stored = self._uploads.get(upload_id)
            if stored is None or not command.startswith("upload"):
                raise invalid_argument("Failed to upload the file: unknown upload or command.")
            stored.data += body
            if "finalize" not in command:
                return 200, None, {"X-Goog-Upload-Status": "active"}
            del self._uploads[upload_id]
            self._files[stored.name] = stored
        return 200, {"file": stored.resource(self.base_url)}, {"X-Goog-Upload-Status": "final"}


def json_object(body: bytes) -> JSON:
    try:
        parsed = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_argument("Invalid JSON payload received. Expected a JSON object.") from exc
    if not isinstance(parsed, dict):
        raise invalid_argument("Invalid JSON payload received. Expected a JSON object.")
    return parsed
