"""The JSON every DRF door answers with: DRF's, encoded by orjson.

An answer that carries an image carries its base64, a megabyte or more for a 1K PNG, and Python's
json module escapes strings a character at a time: 1.7 ms per 500 KB on the development machine,
orjson 0.04 ms. The bytes are DRF's JSONRenderer's (compact, UTF-8, U+2028 and U+2029 escaped);
what orjson does not write as DRF would (datetimes, Decimal, lazy strings, sets...) goes to DRF's
own encoder, and an answer asked for indented (`Accept: application/json; indent=4`) is DRF's own.
Two differences, both valid JSON of the same values: a float in exponent form is written the
shortest way (1e-7, where json writes 1e-07), and NaN and infinities are null (DRF's strict JSON
refuses them with an error).
(drf-orjson-renderer is not that: it writes Decimal as strings and datetimes as orjson does.)
"""

from __future__ import annotations

from typing import Any

import orjson
from rest_framework import renderers
from rest_framework.utils.encoders import JSONEncoder

_DRF = JSONEncoder()
# Datetimes to DRF's encoder ("Z" for UTC); keys that aren't strings written as json.dumps would.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


class JSONRenderer(renderers.JSONRenderer):
    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        if data is None or self.get_indent(accepted_media_type or "", renderer_context or {}) is not None:
            return super().render(data, accepted_media_type, renderer_context)
        try:
            rendered = orjson.dumps(data, default=_DRF.default, option=_OPTIONS)
        except orjson.JSONEncodeError:  # an integer beyond 64 bits...: DRF's way, or its error
            return super().render(data, accepted_media_type, renderer_context)
        if b"\xe2" not in rendered:  # memchr: no U+2028 or U+2029 (nor any other U+2xxx) to escape
            return rendered
        return rendered.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
