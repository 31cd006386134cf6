"""The API's JSON renderer writes what DRF's own writes, byte for byte, by orjson."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.utils.translation import gettext_lazy
from rest_framework import renderers
from rest_framework.utils.serializer_helpers import ReturnDict, ReturnList

from nanoclone.api.renderers import JSONRenderer

MOMENT = dt.datetime(2026, 12, 3, 5, 58, 22, 123456, tzinfo=dt.UTC)

PAYLOADS: list[Any] = [
    {"success": True, "data": {"imageBase64": "iVBORw0KGgo" * 1000, "images": []}, "error": None},
    {
        "created": MOMENT,
        "plain": MOMENT.replace(microsecond=0),
        "paris": MOMENT.astimezone(dt.timezone(dt.timedelta(hours=1))),
    },
    {"naive": dt.datetime(2026, 1, 2, 3, 4, 5), "day": dt.date(2026, 1, 2), "time": dt.time(3, 4, 5, 600)},
    {"cost": Decimal("0.039"), "zero": Decimal("0"), "id": uuid.UUID(int=7), "lazy": gettext_lazy("Images")},
    {"words": 'café ☕ \u2028line\u2029para "quoted" \\ \n\t', "emoji": "🍌", "control": "\x00\x1f"},
    {"ints": [0, -1, 2**53, 2**63 - 1], "floats": [0.1, 123456789.125, -0.0, 1.5e300], "nested": [[{"a": None}]]},
    {"tags": ("a", "b"), "set": {"only"}, "bytes": b"raw", "took": dt.timedelta(seconds=1.5), 3: "int key"},
    ReturnDict({"a": ReturnList([1, 2], serializer=None)}, serializer=None),  # type: ignore[call-overload]
    {"huge": 2**70},  # beyond orjson: DRF's own way
    [],
    "",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_it_writes_what_drf_writes(payload: Any) -> None:
    assert JSONRenderer().render(payload) == renderers.JSONRenderer().render(payload)


def test_a_float_in_exponent_form_is_the_same_number_written_shorter() -> None:
    payload = {"cost": 1e-7, "tiny": 5e-324}
    assert JSONRenderer().render(payload) == b'{"cost":1e-7,"tiny":5e-324}'
    assert renderers.JSONRenderer().render(payload) == b'{"cost":1e-07,"tiny":5e-324}'
    assert json.loads(JSONRenderer().render(payload)) == payload


def test_an_indented_answer_asked_for_is_drf_own() -> None:
    payload = {"a": [1, {"b": MOMENT}]}
    asked = "application/json; indent=4"
    assert JSONRenderer().render(payload, asked) == renderers.JSONRenderer().render(payload, asked)
    assert b'\n    "a"' in JSONRenderer().render(payload, asked)


def test_nothing_renders_as_nothing() -> None:
    assert JSONRenderer().render(None) == b""


def test_what_neither_can_encode_fails_as_with_drf() -> None:
    with pytest.raises(TypeError):
        JSONRenderer().render({"object": object()})


def test_nan_and_infinity_are_null_where_drf_would_fail() -> None:
    assert JSONRenderer().render({"ratio": float("nan"), "most": float("inf")}) == b'{"ratio":null,"most":null}'
    with pytest.raises(ValueError):
        renderers.JSONRenderer().render({"ratio": float("nan")})
