"""A small table read whole and kept per process for a while (prices, budgets): the generation
path then pays no query for it. A save or delete in this process forgets it at once; other
processes see the change within `seconds`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from django.db import models
from django.db.models.signals import post_delete, post_save

T = TypeVar("T")


class CachedTable(Generic[T]):
    every: list[CachedTable[object]] = []

    def __init__(self, model: type[models.Model], load: Callable[[], T], seconds: float) -> None:
        self.load, self.seconds = load, seconds
        CachedTable.every.append(self)  # type: ignore[arg-type]
        self._lock = threading.Lock()
        self._value: tuple[float, T] | None = None
        uid = f"cached-table-{model._meta.label}"
        post_save.connect(self.forget, sender=model, dispatch_uid=f"{uid}-save", weak=False)
        post_delete.connect(self.forget, sender=model, dispatch_uid=f"{uid}-delete", weak=False)

    def get(self) -> T:
        with self._lock:
            if self._value is None or time.monotonic() - self._value[0] > self.seconds:
                self._value = (time.monotonic(), self.load())
            return self._value[1]

    def forget(self, **_: object) -> None:
        with self._lock:
            self._value = None

    @classmethod
    def forget_all(cls) -> None:
        """Tests: a rolled-back test's rows (no delete signal) must not outlive it."""
        for table in cls.every:
            table.forget()
