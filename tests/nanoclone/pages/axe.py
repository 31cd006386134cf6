"""axe-core (bundled by axe-playwright-python) run inside the test's page."""

from __future__ import annotations

from typing import Any

from axe_playwright_python.sync_playwright import Axe

AXE = Axe()
SERIOUS = {"serious", "critical"}


def serious_violations(page: Any) -> list[str]:
    """axe's serious and critical violations on the page as it is now, one line each (empty: none)."""
    results = AXE.run(page).response
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:5]}"
        for v in results["violations"]
        if v["impact"] in SERIOUS
    ]


def serious_violations_at_both_widths(page: Any, scheme: str) -> dict[str, list[str]]:
    """axe on `page` as it is and on its phone-width twin, both in `scheme` from their first paint
    (switching the scheme after load would catch the buttons' colour transition halfway)."""
    from tests.nanoclone.pages.test_browser import phone_twin

    found = {"desktop": serious_violations(page)}
    small = phone_twin(page, color_scheme=scheme)
    try:
        found["phone"] = serious_violations(small)
    finally:
        small.context.close()
    return {width: problems for width, problems in found.items() if problems}
