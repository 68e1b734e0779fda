"""Small factory functions for test data."""

from __future__ import annotations

from datetime import timedelta

from shared.models import Job, new_job_id, utcnow
from shared.storage import new_key
from tests.conftest import image_bytes


def make_job(session, **overrides) -> Job:
    values = dict(id=new_job_id(), status="queued", scale=2, model="bicubic", output_format="png", input_key="k",
                  input_format="png", input_bytes=10, input_width=8, input_height=6, progress=0.0, attempts=0)
    values.update(overrides)
    if values.get("scale") and values.get("input_width") and "output_width" not in overrides:
        # what the API stores at submit: the planned output size
        values["output_width"] = round(values["input_width"] * values["scale"])
        values["output_height"] = round(values["input_height"] * values["scale"])
    job = Job(**values)
    session.add(job)
    session.commit()
    return job


def seconds_ago(n: float):
    return utcnow() - timedelta(seconds=n)


def queued_job(ctx, db_session, data: bytes | None = None, **overrides) -> Job:
    """A queued 40x30 job whose input really is in the context's storage."""
    key = new_key("inputs", "png")
    ctx.storage.put_bytes(key, data if data is not None else image_bytes(width=40, height=30), "image/png")
    return make_job(db_session, input_key=key, input_width=40, input_height=30, **overrides)


def reload(db_session, job: Job) -> Job:
    db_session.expire_all()
    return db_session.get(Job, job.id)
