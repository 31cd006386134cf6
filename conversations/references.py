"""The one place where a reference image, in whatever form a door received it, becomes verified bytes.

Every door hands its references over as they came: raw bytes (an upload), base64 text, a
data: URI, an http(s) URL (fetched through safe_fetch), one of NanoClone's own /files/ links,
or a gallery image id. The model's count limit is checked once, here, and each image is
decoded once (gallery.storage.inspect); what passes is stored or reused without another look.

Own links are recognised rather than fetched (a fetch of our own host would be refused as
loopback, and the plain link needs a login anyway): a plain /files/ link names an image that
must be the caller's own, like a gallery id; a signed share link works for anyone, as it does
in a browser.
"""

from __future__ import annotations

import binascii
import re
import urllib.parse
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import User

from conversations import safe_fetch
from conversations.errors import InvalidRequest
from gallery import storage
from gallery.models import Image
from keys.catalogue import ImageModel

_DATA_URI_MIME_TYPES = frozenset({"image/jpeg", "image/jpg", "image/png", "image/webp"})
_FILE_PATH = re.compile(r"^/files/(?P<id>[0-9a-fA-F-]{32,36})\.(?:png|jpg|webp|bin)$")
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_IMAGE_ID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")

Reference = bytes | str


@dataclass(frozen=True)
class Upload:
    """New image bytes, decoded once and found to be a complete JPEG, PNG or WEBP image."""

    data: bytes = field(repr=False)
    info: storage.ImageInfo


Resolved = Upload | Image  # new bytes to store, or an image already in the gallery


def limit(model: ImageModel) -> int:
    """How many references a request for `model` may carry (the model's and the operator's limit)."""
    return min(settings.MAX_REFERENCE_IMAGES, model.max_reference_images)


def resolve(
    values: Sequence[Reference], *, user: User, model: ImageModel, name: str = "images", base_url: str = ""
) -> list[Resolved]:
    """Every reference as verified bytes or one of the user's gallery images. Raises InvalidRequest.

    `name` is the door's own name for the field, used in messages; `base_url` is where the caller
    reached us, so absolute links to our own files are recognised.
    """
    most = limit(model)
    if len(values) > most:
        raise InvalidRequest(name, f"At most {most} images are accepted in {name} for {model.id}; got {len(values)}.")
    resolved = []
    for index, value in enumerate(values):
        try:
            resolved.append(_resolve_one(value, user, base_url))
        except (safe_fetch.UnsafeURLError, safe_fetch.FetchError) as error:
            raise InvalidRequest(name, f"Reference image {index + 1} ({name}[{index}]): {error}") from error
        except InvalidRequest as error:
            raise InvalidRequest(
                name, f"Reference image {index + 1} ({name}[{index}]): {error.message}", error.status
            ) from error
    return resolved


def _resolve_one(value: Reference, user: User, base_url: str) -> Resolved:
    if isinstance(value, bytes):
        return verify(value)
    text = value.strip()
    if text[:5].lower() == "data:":
        return verify(decode_data_uri(text))
    own = _own_file(text, base_url)
    if own is not None:
        return own if isinstance(own, Upload) else _gallery_image(own, user)
    if _URL.match(text):  # safe_fetch refuses every scheme but http and https
        return fetch_image(text)
    if _IMAGE_ID.match(text):
        return _gallery_image(text, user)
    return verify(decode_base64(text))


def verify(data: bytes) -> Upload:
    """Decode `data` once; accept only a complete JPEG, PNG or WEBP image within the limits."""
    try:
        return Upload(data, storage.inspect(data, max_bytes=safe_fetch.max_bytes()))
    except storage.InvalidImage as error:
        raise safe_fetch.FetchError(str(error).rstrip(".")) from None


def fetch_image(url: str, *, resolver: safe_fetch.Resolver | None = None) -> Upload:
    """An image from a caller's http(s) URL, fetched SSRF-safely and verified."""
    data = safe_fetch.fetch_bytes(url, resolver=resolver)
    try:
        return verify(data)
    except safe_fetch.FetchError as error:
        raise safe_fetch.FetchError(f"{safe_fetch.shown(url.strip())}: {error}") from None


def _gallery_image(image_id: str, user: User) -> Image:
    pk = _uuid(image_id)
    image = Image.objects.filter(pk=pk, user=user).first() if pk else None
    if image is None:  # another user's image is as unknown as a missing one
        raise InvalidRequest("images", f"Unknown image id '{image_id}'.", 404)
    return image


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _own_hosts(base_url: str) -> set[str]:
    hosts = {host.strip("[]").lower() for host in settings.ALLOWED_HOSTS if host != "*"}
    for base in (settings.PUBLIC_URL, base_url):
        if base:
            hosts.add((urllib.parse.urlsplit(base).hostname or "").lower())
    return hosts - {""}


def _own_file(value: str, base_url: str) -> Upload | str | None:
    """One of our own /files/ links: a valid share link's bytes, else the image id it names (None: not ours)."""
    parts = urllib.parse.urlsplit(value)
    match = _FILE_PATH.match(parts.path)
    relative = not parts.scheme and not parts.netloc  # results carry paths when no host is known (stdio)
    if not match or not (relative or (parts.hostname or "").lower() in _own_hosts(base_url)):
        return None
    image_id = match["id"]
    query = urllib.parse.parse_qs(parts.query)
    stamp, signature = query.get("ts", [""])[0], query.get("sig", [""])[0]
    if stamp and signature and (pk := _uuid(image_id)):
        image = Image.objects.filter(pk=pk).first()
        if image is not None and image.check_signature(stamp, signature):
            try:
                data = storage.read(image.file)
            except storage.MissingFile as missing:
                raise InvalidRequest(
                    "images", f"The image behind {value[:120]} is missing from the store.", 404
                ) from missing
            return Upload(data, image.stored.info)  # our own stored file: checked when it was stored
    return image_id


def decode_base64(text: str) -> bytes:
    """Plain base64 (no data: prefix) to bytes, refusing oversized input before decoding it."""
    return _decode(text, "not valid base64 or a data: URI")


def decode_data_uri(uri: str) -> bytes:
    """Bytes of a base64 `data:image/(png|jpeg|webp);base64,...` URI (size-capped; verify() checks the image)."""
    if not isinstance(uri, str) or uri[:5].lower() != "data:":
        raise safe_fetch.FetchError("Not a data: URI")
    header, comma, payload = uri[5:].partition(",")
    if not comma:
        raise safe_fetch.FetchError("Malformed data: URI (no comma)")
    mime_type, *params = (part.strip().lower() for part in header.split(";"))
    if mime_type not in _DATA_URI_MIME_TYPES:
        raise safe_fetch.FetchError(
            f"data: URI must be image/png, image/jpeg or image/webp, not {mime_type or 'untyped'}"
        )
    if "base64" not in params:
        raise safe_fetch.FetchError("data: URI must be base64-encoded")
    if "%" in payload:
        payload = urllib.parse.unquote(payload)
    return _decode(payload, "data: URI is not valid base64", "data: URI is larger than the {limit} MB limit")


def _decode(payload: str, invalid: str, too_large: str = "larger than {limit} MB") -> bytes:
    limit = safe_fetch.max_bytes()
    shown_limit = f"{limit / (1024 * 1024):g}"
    payload = "".join(payload.split())  # line-wrapped base64 is common
    # Refuse before decoding: 4 base64 characters encode 3 bytes.
    if len(payload) // 4 * 3 > limit + 3:
        raise safe_fetch.FetchError(too_large.format(limit=shown_limit))
    payload += "=" * (-len(payload) % 4)  # some encoders drop the padding
    try:
        data = binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError):
        raise safe_fetch.FetchError(invalid) from None
    if len(data) > limit:
        raise safe_fetch.FetchError(too_large.format(limit=shown_limit))
    return data
