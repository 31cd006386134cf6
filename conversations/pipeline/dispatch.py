"""This process's generations: up to NANOCLONE_GENERATIONS at once, each on a thread of its own.

A generation is seconds of waiting on Gemini, not of CPU, so the cluster's workers don't run them.
Each cluster process (serve's own, or each `qcluster` worker) has a dispatcher thread: whenever a
slot is free it claims the next waiting job in the queue's order (queue.claim_next, decided then,
from the database, so every process and host agrees) and starts it on a generation thread. A task
on the cluster (tasks.run_job) only wakes it and returns at once, so the broker's queue never
backs up behind generations (webhooks and the schedules don't wait), and a dispatcher with a free
slot also looks for waiting work every second, so no wake-up that went elsewhere is missed.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.util import Finalize
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connections
from django_q.conf import Conf

from conversations.background import release_connection
from conversations.models import Job
from conversations.pipeline import batches
from conversations.pipeline.queue import claim, claim_next
from conversations.pipeline.running import run_claimed

log = logging.getLogger(__name__)

GENERATION_THREAD_PREFIX = "generation"
LOOK_SECONDS = 1.0  # a dispatcher with a free slot looks for waiting work at least this often


class Generations:
    """The slots, the dispatcher and the generation threads of this process."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._threads = ThreadPoolExecutor(size, thread_name_prefix=GENERATION_THREAD_PREFIX)
        self._changed = threading.Condition()  # a wake-up, a slot freed, a stop
        self._woken = False
        self._running = 0
        self._dispatcher: threading.Thread | None = None
        self._batcher: threading.Thread | None = None
        self.stopping = False

    def start(self) -> None:
        """Start the dispatcher and the batch thread (once per process; again in a process forked
        from this one)."""
        with self._changed:
            if self._dispatcher is None or not self._dispatcher.is_alive():
                self.stopping = False
                self._dispatcher = threading.Thread(target=self._dispatch, name="generation-dispatcher", daemon=True)
                self._dispatcher.start()
            if self._batcher is None or not self._batcher.is_alive():
                self._batcher = threading.Thread(target=self._batch, name="batches", daemon=True)
                self._batcher.start()

    def _batch(self) -> None:
        """Batch work (pipeline.batches) on a thread of its own: its calls to Google take seconds,
        which the dispatcher must not wait for."""
        while True:
            with self._changed:
                if self._changed.wait_for(lambda: self.stopping, settings.BATCH_LOOK_SECONDS):
                    break
            try:
                batches.tick()
            except Exception:  # a busy database, an unreachable Google: the next look tries again
                log.warning("Batch work stopped short", exc_info=True)
            finally:
                connections.close_all()

    def wake(self) -> None:
        """There is waiting work: claim it now if a slot is free (else a finishing generation will)."""
        with self._changed:
            self._woken = True
            self._changed.notify_all()

    def _dispatch(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(self._worth_a_look, LOOK_SECONDS)
                if self.stopping:
                    break
                if self._running >= self.size:
                    continue
                self._woken = False
            try:
                jobs = claim(self.size - self._running)
            except Exception:  # a busy or unreachable database: look again in a moment
                log.warning("Could not claim waiting jobs", exc_info=True)
                jobs = []
            if not jobs:
                connections.close_all()  # nothing to do: no connection held while idle
                continue
            with self._changed:
                self._running += len(jobs)
                self._woken = True  # more may wait: look again at once while slots are free
            for job in jobs:
                self._threads.submit(self._run, job)
        connections.close_all()

    def _worth_a_look(self) -> bool:
        return self.stopping or (self._running < self.size and self._woken)

    def run_next_here(self) -> str:
        """Claim the next waiting job and run it on this thread (django-q2's sync mode: tests)."""
        job = claim_next()
        if job is None:
            return "nothing waiting"
        return str(run_claimed(job, None, watched=True).state)

    def _run(self, job: Job) -> None:
        close_old_connections()
        try:
            run_claimed(job, None, watched=True)
        except Exception:  # run_claimed records every failure on the job: this is a bug's last word
            log.exception("Job %s: its generation thread failed", job.pk)
        finally:
            release_connection()
            with self._changed:
                self._running -= 1
                self._woken = True  # a slot is free: the next waiting job, if any
                self._changed.notify_all()

    def stop(self) -> None:
        """Claim nothing more; the generations running finish (join waits for them)."""
        with self._changed:
            self.stopping = True
            self._changed.notify_all()

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the dispatcher and the running generations; False if some
        still run (they are cut off when the process ends, and their jobs taken over once their
        lease runs out)."""
        deadline = time.monotonic() + timeout
        if self._dispatcher is not None:
            self._dispatcher.join(timeout)
        with self._changed:
            return self._changed.wait_for(lambda: self._running == 0, timeout=max(0.0, deadline - time.monotonic()))

    def finish(self) -> None:
        self.stop()
        self.join(settings.SHUTDOWN_GRACE_SECONDS)


_lock = threading.Lock()
_generations: Generations | None = None


def generations() -> Generations:
    global _generations
    with _lock:
        if _generations is None:
            _generations = Generations(settings.GENERATIONS)
            # A cluster worker process that ends (stopped, or recycled by django-q2 every few hundred
            # tasks) lets its generations finish first, within the shutdown grace.
            Finalize(_generations, _generations.finish, exitpriority=10)
        return _generations


def start_generations(**_: Any) -> None:
    """django-q2's post_spawn: each worker of a cluster starts its process's dispatcher. Not in
    django-q2's sync mode, which runs a task's worker in the caller: there jobs run in the caller too."""
    if not Conf.SYNC:
        generations().start()
