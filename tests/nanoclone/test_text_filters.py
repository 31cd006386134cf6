"""The `clip` template filter: Django's truncatechars, faster for text that needs no truncating."""

from __future__ import annotations

import pytest
from django.template.defaultfilters import truncatechars

from nanoclone.templatetags.text import clip

TEXTS = [
    "",
    "short",
    "exactly ten",
    "a lighthouse at dusk, painted in oils with a stormy sea behind it",
    "Cafe\u0301 au lait",  # a combining accent: NFD in, NFC out, as Django does
    "e\u0301" * 12,  # 24 code points, 12 characters as truncatechars counts them
    "日本語のプロンプト" * 5,
]


@pytest.mark.parametrize("length", [0, 1, 5, 11, 12, 20, 48])
def test_it_is_truncatechars(length: int) -> None:
    for text in TEXTS:
        assert clip(text, length) == truncatechars(text, length), (text, length)
