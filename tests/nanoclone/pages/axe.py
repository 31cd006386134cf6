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
