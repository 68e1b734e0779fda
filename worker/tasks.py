"""Thin Celery tasks: they take ids only and hand the work to the pipeline and the sweeper."""

from __future__ import annotations

import dataclasses

from shared.logs import current_job, job_context
from shared.queue import DELIVER_WEBHOOK, RUN_BAND, RUN_JOB, SWEEP
from shared.settings import MAX_WEBHOOK_TIMEOUT
from worker import pipeline, split, sweeper, webhook_delivery
from worker.celery_app import celery, get_context, settings


@celery.task(name=RUN_JOB, acks_late=True, reject_on_worker_lost=True,
             soft_time_limit=settings.job_time_limit, time_limit=settings.job_hard_time_limit)
def run_job(job_id: str) -> dict:
    """One turn: the job it ran (its own, or another tenant's, ``jobs.next_fair_job``) and how that ended, so
    Celery's "succeeded" line and result name the job that really ran."""
    with job_context(job_id):
        outcome = pipeline.run_job(get_context(), job_id)
        return {"job_id": current_job.get(), "outcome": outcome}


@celery.task(name=RUN_BAND, acks_late=True, reject_on_worker_lost=True,
             soft_time_limit=settings.job_time_limit, time_limit=settings.job_hard_time_limit)
def run_band(job_id: str, index: int) -> str:
    with job_context(job_id):
        return split.run_band(get_context(), job_id, index)


@celery.task(name=SWEEP, ignore_result=True, soft_time_limit=sweeper.SWEEP_SOFT_SECONDS,
             time_limit=sweeper.SWEEP_HARD_SECONDS)
def sweep() -> dict:
    return dataclasses.asdict(sweeper.sweep(get_context(), celery))


@celery.task(name=DELIVER_WEBHOOK, ignore_result=True, acks_late=True, soft_time_limit=2 * MAX_WEBHOOK_TIMEOUT,
             time_limit=3 * MAX_WEBHOOK_TIMEOUT)
def deliver_webhook(delivery_id: str) -> str:
    return webhook_delivery.deliver(get_context(), celery, delivery_id)
