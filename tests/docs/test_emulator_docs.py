"""The emulator's documentation (docs/emulator.md) names every shape it can answer, and the outcome
table (docs/gemini-answers.md) has a row for every shape the sweep sends through the doors."""

from __future__ import annotations

from pathlib import Path

from keys.gemini.emulator import wild
from tests.nanoclone.test_gemini_sweep import SHAPES

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_emulator_page_lists_every_key_and_marker_it_answers_to() -> None:
    page = (DOCS / "emulator.md").read_text()
    missing = [f"`{prefix}*`" for prefix in wild.KEY_ERRORS if f"`{prefix}*`" not in page]
    missing += [f"`{marker}`" for marker in wild.MARKERS if f"`{marker}`" not in page]
    missing += [f"`{marker}`" for marker in ("[block]", "[block:REASON]", "[imagesafety]", "[finish:REASON]")]
    missing = [each for each in missing if each not in page]
    assert not missing, missing


def test_the_outcome_table_has_a_row_for_every_shape_the_sweep_sends() -> None:
    page = (DOCS / "gemini-answers.md").read_text()
    missing = []
    for shape in SHAPES:
        if shape.marker.startswith("[finish:"):
            named = shape.marker.removeprefix("[finish:").rstrip("]")  # a row names each finishReason
        elif shape.marker.startswith("[block:"):
            named = "[block:REASON]"
        else:
            named = shape.marker or shape.key
        if named != "emu-ok-" and named not in page:
            missing.append(f"{shape.name}: {named}")
    assert not missing, missing
