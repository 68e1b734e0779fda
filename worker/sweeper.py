"""The periodic sweeper (Celery beat): nothing stays queued or running for ever.

* queued jobs that never reached the broker (Redis was down at submit) or whose message may be
  lost are enqueued again; a duplicate message is harmless because claiming is atomic;
* running jobs whose lease expired (worker killed) go back to the queue, or fail with
  ``worker_lost`` after ``max_attempts``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from celery import Celery

from shared import jobs
from shared.db import unit_of_work
from shared.queue import enqueue_job
from worker.context import WorkerContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepReport:
    enqueued: int
    requeued: int
    failed: int


def sweep(ctx: WorkerContext, celery: Celery) -> SweepReport:
    with unit_of_work(ctx.sessions) as session:
        requeued, failed = jobs.release_expired_leases(session, ctx.settings.max_attempts)
    with ctx.sessions() as session:
        pending = jobs.jobs_to_enqueue(session, ctx.settings.queued_stale_seconds)
    enqueued = 0
    for job_id in pending:
        try:
            enqueue_job(celery, job_id)
        except Exception:  # broker still down: the next sweep tries again
            log.warning("sweeper could not enqueue job %s; will retry", job_id, exc_info=True)
            break
        with unit_of_work(ctx.sessions) as session:
            jobs.mark_enqueued(session, job_id)
        enqueued += 1
    report = SweepReport(enqueued=enqueued, requeued=len(requeued), failed=len(failed))
    if enqueued or requeued or failed:
        log.info("sweep: %s", report)
    return report
