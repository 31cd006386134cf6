"""CachedTable, the per-process copy of a small table (prices, budgets): a thread loading it never
holds up the others, and a load begun before a change is not kept after it."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Group
from django.db.models.signals import post_delete, post_save

from keys.cached import CachedTable


class SlowFirstLoad:
    """A load that blocks the first time until let go; later loads answer at once."""

    def __init__(self) -> None:
        self.loads = 0
        self.loading, self.let_go = threading.Event(), threading.Event()

    def __call__(self) -> int:
        self.loads += 1
        number = self.loads
        if number == 1:
            self.loading.set()
            assert self.let_go.wait(10)
        return number


@pytest.fixture
def table() -> Iterator[tuple[CachedTable[int], SlowFirstLoad]]:
    load = SlowFirstLoad()
    cached = CachedTable(Group, load, seconds=60)
    yield cached, load
    load.let_go.set()
    CachedTable.every.remove(cached)  # type: ignore[arg-type]
    post_save.disconnect(sender=Group, dispatch_uid="cached-table-auth.Group-save")
    post_delete.disconnect(sender=Group, dispatch_uid="cached-table-auth.Group-delete")


def test_a_thread_loading_the_table_does_not_hold_up_another(table: tuple[CachedTable[int], SlowFirstLoad]) -> None:
    # The load is a query. Held under the cache's lock, the threads waiting for that lock could
    # hold every connection of PostgreSQL's pool, and the load would wait for one until the pool's
    # timeout: requests failed after 30 s under 128 clients on two web workers.
    cached, load = table
    first = threading.Thread(target=cached.get)
    first.start()
    assert load.loading.wait(10)
    answers: list[int] = []
    second = threading.Thread(target=lambda: answers.append(cached.get()))
    second.start()
    second.join(5)
    assert answers == [2], "the second get waited for the first one's load"
    load.let_go.set()
    first.join(5)
    assert cached.get() == 2  # the later load is kept; the first one's value is as old


def test_a_load_begun_before_a_change_is_not_kept(table: tuple[CachedTable[int], SlowFirstLoad]) -> None:
    cached, load = table
    answers: list[int] = []
    first = threading.Thread(target=lambda: answers.append(cached.get()))
    first.start()
    assert load.loading.wait(10)
    cached.forget()  # a save in this process while the load was reading the old rows
    load.let_go.set()
    first.join(5)
    assert answers == [1]
    assert cached.get() == 2  # loaded again: the first load's rows may predate the save
    assert cached.get() == 2 and load.loads == 2
