"""Fixtures for jobs and webhooks (the loopback receiver is shared, in tests/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def fast_retries(settings: Any) -> None:
    settings.WEBHOOK_RETRY_DELAYS = [0.01, 0.01, 0.01]
