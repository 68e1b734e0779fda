"""The periodic sweeper (Celery beat): nothing stays queued, running or undelivered for ever.

* queued jobs that never reached the broker (Redis was down at submit) or whose message may be lost
  are enqueued again; a duplicate message is harmless because claiming is atomic;
* running jobs whose lease expired (worker killed) go back to the queue, or fail with ``worker_lost``
  after ``max_attempts`` (with their ``job.failed`` webhook);
* webhook messages whose retry time has come are published, unless their message still waits in the webhooks
  queue (no webhook worker running: the queue would grow by every pending message each sweep);
* past the retention period, inputs and results are deleted and the job marked expired; expired
  idempotency keys are dropped;
* stored objects no job names (an API killed between storing an upload and inserting its job) are deleted, a
  page of the store a sweep (``worker.orphans``).
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import redis
from celery import Celery
from sqlalchemy import delete, select

from shared import deliveries, job_bands, jobs
from shared.db import unit_of_work
from shared.models import IdempotencyKey, Job, utcnow
from shared.queue import (
    DELIVER_WEBHOOK,
    INFERENCE_QUEUE,
    RUN_BAND,
    RUN_JOB,
    WEBHOOK_QUEUE,
    enqueue_band,
    enqueue_job,
    publish_deliveries,
    waiting_messages,
)
from shared.states import JobStatus
from shared.storage import StorageError
from shared.transitions import change_job
from worker.context import WorkerContext
from worker.orphans import ORPHAN_AGE, remove_orphans

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepReport:
    enqueued: int
    requeued: int
    failed: int
    webhooks: int = 0
    expired: int = 0
    bands: int = 0
    orphans: int = 0
    skipped: bool = False  # another sweep was running


# One sweep at a time in the whole deployment: two at once each counted the missing job messages before the other
# published, and together published them twice (the autoscaler read the doubles as work). They met when sweep
# messages piled up while the maintenance worker was down (four ran within 50 ms of its return) or a sweep took
# longer than the interval. The lock lives as long as a sweep task may (its hard time limit), so a killed sweep
# holds it no longer than that.
SWEEP_LOCK = "upscaler:sweep"
SWEEP_SOFT_SECONDS, SWEEP_HARD_SECONDS = 120, 180


def sweep(ctx: WorkerContext, celery: Celery) -> SweepReport:
    """One pass of every periodic repair, unless another sweep holds ``SWEEP_LOCK`` (then ``skipped``). With
    Redis unreachable for the lock the pass runs anyway: each of its steps stands on its own."""
    client = redis.Redis.from_url(ctx.settings.redis_url, socket_timeout=10)
    lock = client.lock(SWEEP_LOCK, timeout=SWEEP_HARD_SECONDS, blocking=False)
    try:
        held = lock.acquire()
    except redis.RedisError:
        log.warning("sweep: could not take the sweep lock (Redis unavailable); sweeping without it")
        held = None
    if held is False:
        client.close()
        log.info("sweep: another sweep is running; this one skipped")
        return SweepReport(0, 0, 0, skipped=True)
    try:
        return _sweep(ctx, celery)
    finally:
        if held:
            try:
                lock.release()
            except (redis.RedisError, redis.exceptions.LockError):  # expired or Redis away: it times out alone
                log.warning("sweep: could not release the sweep lock; it expires in %d s", SWEEP_HARD_SECONDS)
        client.close()


def _sweep(ctx: WorkerContext, celery: Celery) -> SweepReport:
    requeued, failed = release_expired_leases(ctx)
    # read at most once a sweep, and only if something is stale
    waiting = functools.cache(lambda: _in_broker(ctx, INFERENCE_QUEUE))
    enqueued = _enqueue_pending_jobs(ctx, celery, waiting)
    bands = republish_stalled_bands(ctx, celery, waiting)
    with unit_of_work(ctx.sessions) as session:
        due = deliveries.take_due(session, grace_seconds=5.0)
    present = _in_broker(ctx, WEBHOOK_QUEUE) if due else Counter()
    due = [delivery_id for delivery_id in due if (DELIVER_WEBHOOK, delivery_id) not in present]
    publish_deliveries(celery, due)
    expired = expire_old_jobs(ctx)
    drop_bands_of_ended_jobs(ctx)
    orphans = remove_orphans(ctx)
    ctx.storage.remove_stale_partials(ORPHAN_AGE.total_seconds())
    report = SweepReport(enqueued=enqueued, requeued=len(requeued), failed=len(failed), webhooks=len(due),
                         expired=expired, bands=bands, orphans=orphans)
    if any((enqueued, requeued, failed, due, expired, bands, orphans)):
        log.info("sweep: %s", report)
    return report


def release_expired_leases(ctx: WorkerContext) -> tuple[list[str], list[str]]:
    """Jobs whose worker vanished go back to the queue, or fail ``worker_lost`` after max_attempts, each
    through the one transition function (conditional UPDATE, event, publish, metric)."""
    with ctx.sessions() as session:
        expired = jobs.expired_leases(session)
        session.expunge_all()
    requeued, failed = [], []
    for job in expired:
        status = JobStatus.FAILED if job.attempts >= ctx.settings.max_attempts else JobStatus.QUEUED
        release = lambda session, job=job: jobs.release_lease(session, job, ctx.settings.max_attempts) is not None  # noqa: E731
        if change_job(ctx, job.id, status, release, code="worker_lost") is None:
            continue  # the job moved (its worker came back, or finished) between our read and our write
        if status is JobStatus.FAILED:
            failed.append(job.id)
            if job.staged_output_key:  # what the last, vanished attempt may have uploaded
                try:
                    ctx.storage.delete(job.staged_output_key)
                except StorageError:
                    log.warning("could not delete orphan result %s", job.staged_output_key)
        else:
            requeued.append(job.id)
    return requeued, failed


def republish_stalled_bands(ctx: WorkerContext, celery: Celery,
                            waiting: Callable[[], Counter[tuple[str, ...]]]) -> int:
    """Bands of running split jobs whose worker was killed (lease expired) or whose message may be lost are
    published again; claiming is conditional, so a duplicate does nothing. ``waiting()`` gives the messages the
    inference queue holds (``_in_broker``)."""
    max_attempts = ctx.settings.max_attempts
    with ctx.sessions() as session:
        stalled = [(b.job_id, b.index, b.status == job_bands.RUNNING and b.attempts >= max_attempts)
                   for b in job_bands.stalled(session, ctx.settings.queued_stale_seconds)]
    ended = set()
    for job_id, index, used_up in stalled:  # a band whose every worker vanished fails its job, as a job would
        if used_up and job_id not in ended and change_job(
                ctx, job_id, JobStatus.FAILED,
                lambda session, job_id=job_id, index=index: job_bands.fail_lost(session, job_id, index, max_attempts),
                code="worker_lost") is not None:
            ended.add(job_id)
    stalled = [(job_id, index) for job_id, index, _ in stalled if job_id not in ended]
    present = waiting() if stalled else Counter()
    published = 0
    for job_id, index in stalled:
        if (RUN_BAND, job_id, str(index)) not in present:  # else its message still waits: only its clock restarts
            try:
                with ctx.sessions() as session:  # at the job's fair priority, as split._publish sends bands
                    priority = jobs.fair_priority(session, job_id)
                enqueue_band(celery, job_id, index, priority)
            except Exception:  # broker still down: the next sweep tries again
                log.warning("sweeper could not publish band %d of job %s; will retry", index, job_id,
                            exc_info=True)
                return published
            published += 1
        with unit_of_work(ctx.sessions) as session:
            job_bands.touch(session, job_id, index)
    return published


def _in_broker(ctx: WorkerContext, queue: str) -> Counter[tuple[str, ...]]:
    """``queue``'s waiting messages (``shared.queue.waiting_messages``); none known if Redis cannot say, and then
    every candidate is published again, as a lost message would need."""
    try:
        client = redis.Redis.from_url(ctx.settings.redis_url, socket_timeout=10)
        try:
            return waiting_messages(client, queue)
        finally:
            client.close()
    except redis.RedisError:
        log.warning("sweeper could not read the %s queue; publishing every stale message again", queue,
                    exc_info=True)
        return Counter()


def _enqueue_pending_jobs(ctx: WorkerContext, celery: Celery, waiting: Callable[[], Counter[tuple[str, ...]]]) -> int:
    """Publish a message for stale queued jobs while the queue holds fewer job messages than queued jobs.

    A message is a turn (``jobs.next_fair_job``): a job whose own message ran another job is still run by that
    job's message, so what is missing is a count, not a job's own message (matched by id, the sweeper doubled the
    messages of every job whose message had given its turn away, and the autoscaler read them as work)."""
    with ctx.sessions() as session:
        pending = jobs.jobs_to_enqueue(session, ctx.settings.queued_stale_seconds)
        queued = jobs.count_queued(session) if pending else 0
    present = waiting() if pending else Counter()
    missing = queued - sum(count for message, count in present.items() if message[0] == RUN_JOB)
    enqueued = 0
    for job_id in sorted(pending, key=lambda job: (RUN_JOB, job) in present):  # those without their own first
        if missing <= 0:  # every queued job has a turn waiting: only its clock starts again
            with unit_of_work(ctx.sessions) as session:
                jobs.mark_enqueued(session, job_id)
            continue
        with ctx.sessions() as session:
            priority = jobs.fair_priority(session, job_id)
        try:
            enqueue_job(celery, job_id, priority)
        except Exception:  # broker still down: the next sweep tries again
            log.warning("sweeper could not enqueue job %s; will retry", job_id, exc_info=True)
            break
        with unit_of_work(ctx.sessions) as session:
            jobs.mark_enqueued(session, job_id)
        enqueued += 1
        missing -= 1
    return enqueued


def drop_bands_of_ended_jobs(ctx: WorkerContext) -> int:
    """Delete the stored bands of ended split jobs (raw rows: 3 bytes an output pixel). The worker ending a job
    deletes them at once; a job canceled, or failed ``worker_lost``, while no worker gathered it kept them until
    retention, or for ever without one. Returns how many went."""
    with ctx.sessions() as session:
        stored = job_bands.stored_of_ended_jobs(session)
    dropped = 0
    for job_id, index, key in stored:
        try:
            ctx.storage.delete(key)
        except StorageError:
            log.warning("could not delete band %d of ended job %s; will retry", index, job_id, exc_info=True)
            continue
        with unit_of_work(ctx.sessions) as session:
            job_bands.forget_result(session, job_id, index, key)
        dropped += 1
    return dropped


def expire_old_jobs(ctx: WorkerContext, limit: int = 200, look_at: int = 1000) -> int:
    """Delete the objects of jobs finished before the retention period; the rows stay (marked expired).

    Oldest first, up to ``limit`` jobs expired a pass, looking past those whose objects cannot be deleted now
    (up to ``look_at`` jobs): an unordered 200 that kept failing stalled retention for every other job. Each job's
    result is deleted last, so a pass that fails part-way leaves a job whose result still downloads (it once
    deleted the result and left the job saying it could be fetched: a 500, or a link to nothing). Band files are
    the band sweep's (``drop_bands_of_ended_jobs``), which runs for every ended job."""
    settings = ctx.settings
    now = utcnow()
    with unit_of_work(ctx.sessions) as session:
        session.execute(delete(IdempotencyKey).where(
            IdempotencyKey.created_at < now - timedelta(seconds=settings.idempotency_ttl)))
    if settings.retention_seconds <= 0:
        return 0
    cutoff = now - timedelta(seconds=settings.retention_seconds)
    with ctx.sessions() as session:  # only an ended job has finished_at: no status term, which SQLite's planner
        # took over the partial index ix_jobs_retention (a scan of every status-matching row, and a sort)
        old = session.scalars(select(Job).where(Job.finished_at < cutoff, Job.expired_at.is_(None))
                              .order_by(Job.finished_at, Job.id).limit(look_at)).all()
        session.expunge_all()
    expired = 0
    for job in old:
        if expired >= limit:
            break
        try:
            for key in jobs.stored_keys(job):
                ctx.storage.delete(key)
        except StorageError:
            log.warning("could not delete objects of expired job %s; will retry", job.id, exc_info=True)
            continue
        with unit_of_work(ctx.sessions) as session:  # its owner's DELETE may have marked it meanwhile
            expired += jobs.mark_expired(session, job.id)
    return expired
