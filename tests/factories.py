"""Small factory functions for test data."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

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


def outage_wait_over(db_session, job_id: str) -> None:
    """As if the wait a storage outage set on the job (``retry_at``) had passed."""
    db_session.query(Job).filter_by(id=job_id).update({"retry_at": seconds_ago(1)})
    db_session.commit()


def queued_job(ctx, db_session, data: bytes | None = None, **overrides) -> Job:
    """A queued 40x30 job whose input really is in the context's storage."""
    key = new_key("inputs", "png")
    ctx.storage.put_bytes(key, data if data is not None else image_bytes(width=40, height=30), "image/png")
    return make_job(db_session, input_key=key, input_width=40, input_height=30, **overrides)


def reload(db_session, job: Job) -> Job:
    db_session.expire_all()
    return db_session.get(Job, job.id)


def models_with_a_scale_2_network(folder: Path) -> Path:
    """A models folder holding the shipped networks and ``two``, a record that runs at x2 only (its weights are
    never loaded: what refuses other scales does so before)."""
    folder.mkdir()
    for shipped in (Path(__file__).parents[1] / "shared" / "weights").iterdir():
        (folder / shipped.name).symlink_to(shipped)
    (folder / "two.json").write_text('{"name": "two", "arch": "residual_sr", "network": {"scales": [2]}}')
    (folder / "two.weights.h5").write_bytes(b"never loaded: refused before")
    return folder
