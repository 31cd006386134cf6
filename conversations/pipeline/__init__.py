"""The one generation pipeline every door (pages, native API, dialects, jobs, MCP) goes through.

start() is the doors' one call: it validates and records the turn and the job before any network
call (submit), then runs the job the way the door needs (RunMode). run() claims the job, calls
Gemini through the key pool with the conversation's history, stores the images and finishes the
job. run() takes an id and is safe to run twice.

One module per concern; each imports only those below it (`make lint` holds the order):

    start                            the doors' one call
    dispatch                         this process's generation threads, claiming in the queue's order
    batches                          jobs at the Batch API's price: packed, submitted, polled, collected
    queue | recording | running      the cluster's queue and sweep | recording and idempotency | claiming and running
    generating                       calling Gemini through the pool
    results                          storing images, finishing the job
    history | leases                 what Gemini sees of the conversation | a run's lease and heartbeat
    request                          the request and its validation

This module exports what doors and tasks use. `conversations.pipeline.recover_stale_jobs` is
stored in the database (django-q2's schedule) and must keep resolving here.
"""

from conversations.errors import InvalidRequest
from conversations.pipeline.batches import cancel
from conversations.pipeline.dispatch import generations
from conversations.pipeline.history import REGENERATES, edited_next, history
from conversations.pipeline.queue import (
    QueueNow,
    claim_next,
    enqueue,
    place_in_line,
    queue_now,
    recover_stale_jobs,
)
from conversations.pipeline.recording import submit
from conversations.pipeline.request import (
    MAX_IMAGES_PER_JOB,
    EarlierTurn,
    GenerationRequest,
    QueueFull,
    RunMode,
    check_room,
)
from conversations.pipeline.results import DISPLAY_RENDITION, GenerationFailed, output_images
from conversations.pipeline.running import JOB_THREAD_PREFIX, run
from conversations.pipeline.start import start

__all__ = [
    "DISPLAY_RENDITION",
    "JOB_THREAD_PREFIX",
    "MAX_IMAGES_PER_JOB",
    "REGENERATES",
    "EarlierTurn",
    "GenerationFailed",
    "GenerationRequest",
    "InvalidRequest",
    "QueueFull",
    "QueueNow",
    "RunMode",
    "cancel",
    "check_room",
    "claim_next",
    "edited_next",
    "enqueue",
    "generations",
    "history",
    "output_images",
    "place_in_line",
    "queue_now",
    "recover_stale_jobs",
    "run",
    "start",
    "submit",
]
