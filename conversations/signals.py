"""Doors that notify someone (webhooks, callbacks, live pages) listen here.

Sent with send_robust by the pipeline: a failing receiver is logged and never breaks a job.
"""

from django.dispatch import Signal

# sender=Job class, job=<Job>: the job moved (phase or progress).
job_progress = Signal()
# sender=Job class, job=<Job>: the job reached succeeded, failed or cancelled.
job_finished = Signal()
