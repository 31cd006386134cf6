"""django-q2's cluster inside serve's own process: its sentinel, pusher, workers and monitor run
as threads instead of processes (NANOCLONE_CLUSTER=threads, the default).

Why: django-q2 forks a process for each of them, eight with four workers, and each holds about
86 MiB of RSS (Django and every library, once per process). NanoClone's tasks spend their time
waiting on Gemini and on webhook receivers, not on the CPU, so threads run them as well, for
about 10 MiB in all. The broker, the schedules, the task results, /health and admin are
django-q2's own and unchanged; `manage.py qcluster` on other hosts works beside it.

The workers only hand generations out: each task claims the next waiting job and starts it on one of
the process's generation threads (conversations.pipeline.dispatch), so four workers keep up to
NANOCLONE_GENERATIONS generations waiting on Gemini side by side.

What a thread can't do is be killed: django-q2 stops a task that outlives Q_CLUSTER["timeout"]
by killing its worker process. Here that timeout is off, and each of NanoClone's tasks bounds its
own time instead (Gemini's timeout per call, the webhook timeout, the job lease). A task that
needs killing still comes back like any interrupted one when serve stops.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
import uuid
from collections.abc import Callable
from multiprocessing import Value
from typing import Any

from django.db import connections
from django_q.cluster import Sentinel
from django_q.conf import Conf
from django_q.worker import worker

from conversations import pipeline


class ThreadQueue(queue.Queue):
    """A queue between threads, with the two calls Sentinel makes of a multiprocessing one."""

    def close(self) -> None:
        pass  # a multiprocessing queue's close() shuts its pipe, which the threads still read

    def join_thread(self) -> None:
        pass  # no feeder thread to wait for


def closing_connections(target: Callable[..., Any]) -> Callable[..., None]:
    """`target`, then this thread's database connections closed. A worker thread ends every
    Q_CLUSTER["recycle"] tasks (500) and the guard starts another: a pooled PostgreSQL connection
    left open by a thread that is gone never goes back to its pool (a process's end closed it)."""

    def run(*args: Any) -> None:
        try:
            target(*args)
        finally:
            connections.close_all()

    return run


class ThreadSentinel(Sentinel):
    """django-q2's Sentinel (the guard that starts, watches, replaces and stops the others, and
    runs the schedules), spawning threads where it would fork processes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.task_queue = ThreadQueue(maxsize=Conf.QUEUE_LIMIT or 0)
        self.result_queue = ThreadQueue()

    def spawn_process(self, target: Callable[..., Any], *args: Any) -> threading.Thread:
        thread = threading.Thread(
            target=closing_connections(target), args=args, name=f"qcluster-{target.__name__}", daemon=True
        )
        thread.pid = os.getpid()  # type: ignore[attr-defined]  # the guard and /health read a pid
        if target is worker:
            thread.timer = args[2]  # type: ignore[attr-defined]
            self.pool.append(thread)
        thread.start()
        return thread

    def spawn_worker(self) -> None:
        # Timeout -1: a running task is never timed out. The guard would otherwise "replace" a
        # thread it can't kill, and both would go on taking tasks.
        self.spawn_process(worker, self.task_queue, self.result_queue, Value("f", -1), -1)


class InProcessCluster:
    """Started and stopped by serve; stop() returns once every task in hand has finished."""

    def __init__(self) -> None:
        self.stop_event = threading.Event()
        self.start_event = threading.Event()
        # Sentinel's constructor sets SIGINT and SIGTERM handlers, as it would in a process of its
        # own; here they are serve's, so they are put back.
        handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.sentinel = ThreadSentinel(self.stop_event, self.start_event, cluster_id=uuid.uuid4(), start=False)
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
        self.thread = threading.Thread(target=self.sentinel.start, name="qcluster-sentinel", daemon=True)

    def start(self) -> InProcessCluster:
        self.thread.start()
        return self

    def stop(self) -> None:
        """Ask it to stop: no new task or job is taken, and those running finish (see join)."""
        self.stop_event.set()
        pipeline.generations().stop()

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for it, and the generations it started, to have stopped;
        False if some still run."""
        deadline = time.monotonic() + timeout
        self.thread.join(timeout)
        return not self.thread.is_alive() and pipeline.generations().join(max(0.0, deadline - time.monotonic()))
