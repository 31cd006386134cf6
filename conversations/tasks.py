"""django-q2 task entry points: they take ids only and are safe to run twice."""

from conversations import pipeline


def run_job(job_id: str) -> str:
    job = pipeline.run(job_id)
    return job.state if job else "gone"
