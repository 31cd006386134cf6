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
        self._forgotten = 0  # how many times it was forgotten: a load begun before a forget is not kept
        uid = f"cached-table-{model._meta.label}"
        post_save.connect(self.forget, sender=model, dispatch_uid=f"{uid}-save", weak=False)
        post_delete.connect(self.forget, sender=model, dispatch_uid=f"{uid}-delete", weak=False)

    def get(self) -> T:
        with self._lock:
            value, forgotten = self._value, self._forgotten
        if value is not None and time.monotonic() - value[0] <= self.seconds:
            return value[1]
        # Loaded outside the lock: the query needs a database connection, and on PostgreSQL's pool
        # the threads waiting for this lock could hold every one of them (a deadlock until the
        # pool's timeout). Threads that find it stale together each load it; the latest begun is kept.
        value = (time.monotonic(), self.load())
        with self._lock:
            if self._forgotten == forgotten and (self._value is None or self._value[0] < value[0]):
                self._value = value
        return value[1]

    def forget(self, **_: object) -> None:
        with self._lock:
            self._value = None
            self._forgotten += 1

    @classmethod
    def forget_all(cls) -> None:
        """Tests: a rolled-back test's rows (no delete signal) must not outlive it."""
        for table in cls.every:
            table.forget()
