"""django-q2 task entry points: they take ids only and are safe to run twice."""

from django_q.conf import Conf

from conversations import pipeline


def run_job(job_id: str) -> str:
    """A wake-up: this process's dispatcher claims the next waiting job in the queue's order (not
    necessarily `job_id`: pipeline.queue decides) as soon as a generation slot is free, and this
    task returns at once. In django-q2's sync mode (run in the caller) the job runs here."""
    generations = pipeline.generations()
    if Conf.SYNC:
        return generations.run_next_here()
    generations.start()
    generations.wake()
    return "woke the dispatcher"
