"""How a job attempt ends, shared by whole jobs (``worker.pipeline``) and split ones (``worker.split``):
failures as stable codes, the result stored under a fresh key, the job finished through the one transition
function, orphans removed, metrics observed."""

from __future__ import annotations

import contextvars
import logging
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from PIL import Image, UnidentifiedImageError
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from shared import jobs, metrics
from shared.db import unit_of_work
from shared.limits import EXTENSIONS, OUTPUT_FORMATS
from shared.models import Job
from shared.states import JobStatus
from shared.storage import RESULTS, ObjectMissing, StorageError, new_key
from shared.transitions import change_job
from worker.context import WorkerContext
from worker.engine.registry import ModelUnloadable, UnknownModel
from worker.fetch import FetchFailed
from worker.imaging import UnreadableImage
from worker.time_limit import time_limit_waived

log = logging.getLogger(__name__)
# Pillow's words for an input it cannot read. An encoder's failure also says "image file" ("broken data stream
# when writing image file"): that is not the input's fault, so it is not input_unreadable.
DECODER_WORDS = ("cannot identify image file", "image file is truncated")


class LeaseLost(RuntimeError):
    """Another worker owns the job now, or it was canceled: stop without writing anything."""


class JobFailure(RuntimeError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def observe(job: Job, timings: dict[str, float], ran: dict) -> None:
    """Metrics by the network that ran (``auto`` resolves per input) and its scale (1, 2, 3, 4 or 8)."""
    megapixels = job.input_width * job.input_height / 1e6
    model, scale = ran["model"], str(math.prod(ran["network_scales"]) if ran["network_scales"] else 1)
    metrics.JOB_DURATION.labels(model, scale).observe(timings["total_s"])
    metrics.JOB_MEGAPIXELS.labels(model).observe(megapixels)
    metrics.MEGAPIXELS_PROCESSED.labels(model, scale).inc(megapixels)
    metrics.INFERENCE_SECONDS.labels(model, scale).inc(timings["inference_s"])


def finish_job(ctx: WorkerContext, job_id: str, status: JobStatus, **values) -> bool:
    """End our job (event, publish and count through the one transition function); False if no longer ours."""
    return change_job(ctx, job_id, status, lambda session: jobs.finish(session, job_id, ctx.owner, status, **values),
                      code=values.get("error_code") or "") is not None


def succeed_job(ctx: WorkerContext, job_id: str, **values) -> bool:
    """End our job succeeded with its stored result (``finish_job``), the soft time limit waived meanwhile: landing
    after the commit (while its event is published to Redis, which may retry for seconds) it went to the attempt's
    error handling, which discarded the result of a job already recorded as succeeded (``time_limit_waived``)."""
    with time_limit_waived():
        return finish_job(ctx, job_id, JobStatus.SUCCEEDED, progress=1.0, **values)


def renew_lease(ctx: WorkerContext, job_id: str, progress: float | None = None) -> None:
    """Extend our job's lease (and record progress); raise ``LeaseLost`` if the job is no longer ours.

    The database's connection failing is no answer either way, so the attempt goes on: the next renewal (a tile
    or a second later, and ``lease_kept``'s thread) asks again, and every write that ends the attempt is conditional
    on the lease. Raised, one failed renewal during a failover of a few seconds ended every running job's attempt
    mid-inference: each stayed ``running`` under a lease nobody renewed for up to ``lease_seconds``, then ran again
    from the start, an attempt spent (``worker_lost`` after ``max_attempts`` such failovers)."""
    try:
        with unit_of_work(ctx.sessions) as session:
            renewed = jobs.renew(session, job_id, ctx.owner, ctx.settings.lease_seconds, progress)
    except SQLAlchemyError as exc:
        if not database_outage(exc):
            raise
        log.warning("job %s: could not renew its lease (database unavailable), going on: %s", job_id, exc)
        return
    if not renewed:
        raise LeaseLost(job_id)


@contextmanager
def lease_kept(ctx: WorkerContext, job_id: str) -> Iterator[None]:
    """Renew our job's lease from a thread, every third of it, while the block runs.

    Why: the lease is how the sweeper tells a dead worker from a slow one, and only inference reports progress.
    A step that reports nothing (downloading or fetching a large input, decoding it, encoding a huge output,
    uploading it to a slow bucket) could outlast the lease: the sweeper queued the job again while this worker
    still uploaded, the upload was thrown away, and a job that always takes that long failed ``worker_lost``
    after ``max_attempts``. The thread lives as long as this process does, so a killed worker still loses its
    jobs within one lease, and the job's time limit still ends a step that hangs. It only renews: a lost lease
    (canceled, taken over) is found by the block's own ``renew_lease`` and ``finish_job``, which then discard
    what it wrote; the thread stops at the first renewal that finds the job no longer ours."""
    stop = threading.Event()

    def keep() -> None:
        while not stop.wait(ctx.settings.lease_seconds / 3):
            try:
                with unit_of_work(ctx.sessions) as session:
                    if not jobs.renew(session, job_id, ctx.owner, ctx.settings.lease_seconds):
                        return
            except Exception:  # a database blip: the next round tries again, as the lease allows
                log.warning("job %s: could not renew its lease", job_id, exc_info=True)

    # run in a copy of this context: its lines carry the job's id, as every line logged for a job does
    thread = threading.Thread(target=contextvars.copy_context().run, args=(keep,), name=f"lease-{job_id}",
                              daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def fail_job(ctx: WorkerContext, job_id: str, exc: Exception) -> None:
    """End our job as failed with the stable code of ``exc`` (logged with a traceback only when unexpected)."""
    failure = classify(exc)
    # the cause in the log (an endpoint, a bucket, a key, a traceback); the customer reads only ``failure``
    log.log(logging.ERROR if failure.code == "internal_error" else logging.WARNING,
            "job %s failed: %s: %s", job_id, failure.code, exc, exc_info=failure.code == "internal_error")
    finish_job(ctx, job_id, JobStatus.FAILED, error_code=failure.code, error_message=str(failure)[:2000])


def store_result(ctx: WorkerContext, job: Job, result_path: Path) -> tuple[str, int]:
    """Upload a finished output under a fresh key, recorded on the job first (so a dead attempt's object is
    found and removed by the next); returns (key, bytes). Raises ``LeaseLost`` if the job is not ours."""
    output_key = new_key(RESULTS, EXTENSIONS[job.output_format])
    with unit_of_work(ctx.sessions) as session:
        if not jobs.stage_output(session, job.id, ctx.owner, output_key):
            raise LeaseLost(job.id)
    size = result_path.stat().st_size
    try:
        ctx.storage.put_file(output_key, result_path, OUTPUT_FORMATS[job.output_format])
    except BaseException:  # a failed or interrupted upload may have left part of the object behind
        discard(ctx, output_key)
        raise
    return output_key, size


def database_outage(exc: BaseException) -> bool:
    """The database's connection failed (not a constraint or data error, which every attempt would meet again).

    Then whether the last commit landed is unknown: it may have, its answer lost (a failover, a dropped
    connection). An object a row may name is never discarded on one: the row either names it for good (a
    succeeded job, a band done) or as staged, and the next attempt removes it; one no row names is the orphan
    sweep's (``worker.orphans``). Discarded, a job recorded as succeeded pointed at a deleted result."""
    return isinstance(exc, (OperationalError, InterfaceError))


def discard_unless_committed(ctx: WorkerContext, key: str | None, exc: BaseException) -> None:
    """Remove what an attempt that ended with ``exc`` wrote under ``key``, unless its commit may have landed."""
    if not database_outage(exc):
        discard(ctx, key)


def is_outage(exc: Exception) -> bool:
    """An outage of what the job runs on, not a fault of the job: object storage unreachable (not an object that
    is missing) or the database's connection. Such an attempt ends without failing the job (``stop_for_outage``)."""
    return (isinstance(exc, StorageError) and not isinstance(exc, ObjectMissing)) or database_outage(exc)


def stop_for_outage(ctx: WorkerContext, job_id: str, exc: Exception) -> str:
    """End an attempt an outage stopped, leaving the job to run again: a storage outage hands it back to the
    queue (``jobs.hand_back``: it waits a while, the attempt not counted) until outages have kept it from finishing
    for ``storage_outage_grace`` seconds, then fails it ``storage_failed``; with the database away nothing can be
    written, so its lease runs out and the sweeper queues it again. Before, one failed request failed every job a
    worker took during a short outage (storage), or failed a running job as ``internal_error`` after a database
    failover. Returns what happened: retrying, failed or database_unavailable."""
    try:
        if isinstance(exc, StorageError):
            with ctx.sessions() as session:
                job = session.get(Job, job_id)
                used_up = job is not None and jobs.outage_outlasted(job, ctx.settings.storage_outage_grace)
            if used_up:
                fail_job(ctx, job_id, exc)
                return "failed"
            if change_job(ctx, job_id, JobStatus.QUEUED,
                          lambda session: jobs.hand_back(session, job_id, ctx.owner)) is not None:
                log.warning("job %s: %s; queued again for another attempt", job_id, exc)
                return "retrying"
            return "lease_lost"
    except SQLAlchemyError as db_exc:
        exc = db_exc
    log.warning("job %s: the database is unavailable (%s); its lease will run out and the sweeper queue it again",
                job_id, exc)
    return "database_unavailable"


def classify(exc: Exception) -> JobFailure:
    if isinstance(exc, JobFailure):
        return exc
    if isinstance(exc, ObjectMissing):
        return JobFailure("input_missing", "the input image is no longer in storage")
    if isinstance(exc, StorageError):
        # the error names the store's endpoint, bucket and object: an operator's facts, in the log (fail_job)
        return JobFailure("storage_failed", "object storage was unavailable on every attempt; try again later")
    if isinstance(exc, FetchFailed):
        return JobFailure(exc.code, str(exc))
    if isinstance(exc, UnreadableImage):
        return JobFailure("input_unreadable", str(exc))
    if isinstance(exc, (UnidentifiedImageError, Image.DecompressionBombError, SyntaxError)):
        return JobFailure("input_unreadable", "the input could not be decoded as an image")
    if isinstance(exc, SoftTimeLimitExceeded):
        return JobFailure("time_limit", "the job ran past its time limit")
    if isinstance(exc, ModelUnloadable):  # the cause (a path, a file's fault) is the operator's, in the log
        return JobFailure("engine_failed", f"this worker could not load model {exc.name!r}; the operator's log has "
                                           "why under this job's id")
    if isinstance(exc, UnknownModel):
        return JobFailure("engine_failed", f"this worker has no model {exc}")
    if isinstance(exc, OSError) and any(words in str(exc) for words in DECODER_WORDS):
        return JobFailure("input_unreadable", "the input could not be decoded as an image")
    return JobFailure("internal_error", "an unexpected error in the worker; the operator's log has it under this "
                                        "job's id")


def discard(ctx: WorkerContext, key: str | None) -> bool:
    """Delete what an attempt wrote, if anything; False when the delete failed (the key must stay recorded, for
    the sweeper or retention to try again)."""
    if key is None:
        return True
    try:
        ctx.storage.delete(key)
    except StorageError:
        log.exception("could not remove orphan result %s", key)
        return False
    return True
