"""Queueing work on the django-q2 cluster."""

from __future__ import annotations

from django.db import transaction


def enqueue_on_commit(func: str, *args: str, task_name: str) -> None:
    """Queue `func(*args)` on the cluster once the surrounding transaction commits, so the task
    never looks for rows that aren't visible yet."""
    from django_q.tasks import async_task

    transaction.on_commit(lambda: async_task(func, *args, task_name=task_name))
