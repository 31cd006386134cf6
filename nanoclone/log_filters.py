"""Filters for the log configuration (settings.LOGGING)."""

from __future__ import annotations

import logging


class ServiceUnavailableIsAWarning(logging.Filter):
    """Django logs every 5xx answer as an ERROR ("Service Unavailable: /path"). A 503 is NanoClone
    saying "try again later" on purpose (the database busy, no usable key), logged where it was
    decided with its reason; Django's line stays, for the path, as a warning: errors are for bugs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) == 503 and record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        return True
