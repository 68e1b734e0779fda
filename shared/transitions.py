"""The one way a job changes state: conditional UPDATE, its webhook event in the same transaction, commit,
publish the event after the commit, count the outcome.

The API (cancel), the worker (claim, finish) and the sweeper (lost leases) all go through ``change_job``, so
no caller can forget the event, publish it before the commit, or count an outcome twice. The UPDATE itself
is one of ``shared.jobs``' conditional statements, passed in as ``update``: it returns False when the job was
not in the state it expected, and then nothing else happens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from shared import jobs, metrics, quota
from shared.db import unit_of_work
from shared.models import Job
from shared.queue import publish_deliveries
from shared.settings import Settings
from shared.states import TERMINAL, JobStatus
from shared.storage import Storage
from shared.webhooks import record_event

EventFor = Callable[[Job], str | None]


class Platform(Protocol):
    """What a transition needs; the API's ``Services`` and the worker's ``WorkerContext`` both have it."""

    sessions: sessionmaker[Session]
    celery: Celery
    storage: Storage
    settings: Settings


def default_event(status: JobStatus) -> EventFor:
    """Terminal states send ``job.<status>``; other states send nothing."""
    return lambda _job: f"job.{status.value}" if status in TERMINAL else None


def change_job(platform: Platform, job_id: str, status: JobStatus, update: Callable[[Session], bool], *,
               event: EventFor | None = None, code: str = "") -> Job | None:
    """Apply ``update``; if it changed the job, record its event, commit, publish, give back the quota charge of
    a job that made nothing (``shared.quota.refundable``), count. Returns the job as committed (detached), or None
    when the update found the job in another state."""
    event_for = event or default_event(status)
    with unit_of_work(platform.sessions) as session:
        if not update(session):
            return None
        job = session.get(Job, job_id)
        name = event_for(job)
        message = record_event(session, job, name, platform.storage, platform.settings) if name else None
        made_nothing = status in TERMINAL and quota.refundable(job)
        refund = quota.take_charge(job) if made_nothing else None
        # a job by image_url never recorded (its attempts killed between charge and record) holds no charge, but its
        # attempts' notes do (``shared.quota``): they went back to no one when it ended worker_lost
        unrecorded = made_nothing and job.awaiting_fetch
        session.flush()
        session.refresh(job)
        session.expunge(job)
    publish_deliveries(platform.celery, [message])
    if refund is not None:
        quota.refund(platform.settings, job.tenant, refund)
    if unrecorded:
        quota.refund_pending(platform.settings, job.tenant, job.id)
    if status in TERMINAL:
        metrics.JOBS_FINISHED.labels(status.value, code).inc()
    return job


def cancel_job(platform: Platform, job_id: str) -> Job | None:
    """Cancel a queued or running job (the API's cancel, ``upscaler keys revoke --cancel-jobs``): its
    ``job.canceled`` event, the quota of a job that made nothing given back; None if it had already ended."""
    return change_job(platform, job_id, JobStatus.CANCELED, lambda session: jobs.cancel(session, job_id))
