"""Dotted paths NanoClone stores outside its code (django-q2's schedules in the database, queued
tasks in the broker) keep naming functions that import, whatever module the code moves to.

They are found in the source, migrations included: a schedule's `"func": "..."` and the first
argument of every enqueue_on_commit() or async_task() call."""

from __future__ import annotations

import ast
import pydoc
from pathlib import Path

from django.conf import settings

APPS = ("conversations", "gallery", "keys", "nanoclone")
QUEUEING = ("enqueue_on_commit", "async_task")


def stored_paths() -> set[str]:
    paths = set()
    for app in APPS:
        for source in (Path(settings.BASE_DIR) / app).rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text())):
                if isinstance(node, ast.Dict):
                    for key, value in zip(node.keys, node.values, strict=True):
                        if isinstance(key, ast.Constant) and key.value == "func" and isinstance(value, ast.Constant):
                            paths.add(str(value.value))
                elif (
                    isinstance(node, ast.Call)
                    and getattr(node.func, "id", getattr(node.func, "attr", "")) in QUEUEING
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                ):
                    paths.add(str(node.args[0].value))
    return paths


def test_it_finds_the_schedules_and_tasks() -> None:
    assert {
        "conversations.pipeline.recover_stale_jobs",  # schedules
        "keys.pool.reset_daily",
        "keys.usage.prune",
        "conversations.tasks.run_job",  # tasks
        "conversations.webhooks.deliver",
    } <= stored_paths()


def test_every_stored_path_names_a_function_that_imports() -> None:
    for path in stored_paths():
        assert callable(pydoc.locate(path)), f"{path} does not import (django-q2's worker finds it with pydoc.locate)"
