"""Small factory functions for test data."""

from __future__ import annotations

from datetime import timedelta

from shared.models import Job, new_job_id, utcnow


def make_job(session, **overrides) -> Job:
    values = dict(id=new_job_id(), status="queued", scale=2, model="bicubic", output_format="png", input_key="k",
                  input_format="png", input_bytes=10, input_width=8, input_height=6, progress=0.0, attempts=0)
    values.update(overrides)
    job = Job(**values)
    session.add(job)
    session.commit()
    return job


def seconds_ago(n: float):
    return utcnow() - timedelta(seconds=n)
