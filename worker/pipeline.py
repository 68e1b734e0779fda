"""One job from claim to result: the work a ``run_job`` task does.

Safe to run twice for the same id: the database lease decides who works, a worker that loses its
lease (sweeper requeued the job, or it was canceled) stops at the next tile and removes what it
wrote, and every result is stored under a fresh key so nothing is ever overwritten.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path

import redis

from shared import jobs, quota, tenants
from shared.db import unit_of_work
from shared.formats import CONTENT_TYPES, ImageRejected, sniff
from shared.limits import EXTENSIONS, check_job
from shared.logs import current_job
from shared.models import Job
from shared.sizing import SizeError, plan
from shared.states import JobStatus
from shared.storage import StorageError
from shared.transitions import change_job
from worker import split
from worker.context import WorkerContext
from worker.fetch import fetch
from worker.outcomes import (
    JobFailure,
    LeaseLost,
    database_outage,
    discard,
    discard_unless_committed,
    fail_job,
    is_outage,
    lease_kept,
    observe,
    renew_lease,
    stop_for_outage,
    store_result,
    succeed_job,
)
from worker.render import Prepared, finish, prepare
from worker.scratch import scratch
from worker.time_limit import hold_time_limit

log = logging.getLogger(__name__)
PROGRESS_EVERY_SECONDS = 1.0
# seconds between tries at a turn's claim while the database is away (about a minute in all, a failover's length)
CLAIM_RETRY_WAITS = (1, 2, 4, 8, 15, 30)


def run_job(ctx: WorkerContext, job_id: str) -> str:
    """Process the job this message's turn goes to (``jobs.next_fair_job``: its own, or a less-served tenant's);
    returns what happened: succeeded, failed, split, skipped or lease_lost."""
    ctx.band_inputs.clear()  # another split job's decoded input, kept for its bands: not for this turn's memory
    release_time_limit = hold_time_limit()  # raised inside the try below, where it ends the claimed job
    try:
        job = _claim_turn_through_outage(ctx, job_id)
    except BaseException:
        release_time_limit()
        raise
    if job is None:
        release_time_limit()
        log.info("job %s not claimable (running elsewhere, finished or unknown) and none queued: skipped", job_id)
        return "skipped"
    job_id = job.id
    output_key = None
    try:
        release_time_limit()
        if job.staged_output_key:  # a previous attempt died around its upload: remove what it may have left
            if not discard(ctx, job.staged_output_key):  # still named, or it would be stored for good: try later
                return stop_for_outage(ctx, job_id, StorageError(f"could not delete {job.staged_output_key}"))
            with unit_of_work(ctx.sessions) as session:
                jobs.stage_output(session, job_id, ctx.owner, None)
        if job.bands_total is not None:  # a split job taken back from workers that vanished
            with lease_kept(ctx, job_id):
                if split.same_build(ctx, job):
                    return split.resume(ctx, job)
                split.start_over(ctx, job)  # then it runs below as a fresh job
        with lease_kept(ctx, job_id), scratch("job") as tmp:
            started = time.monotonic()
            source_path = Path(tmp) / "input"
            if job.awaiting_fetch:
                _fetch_input(ctx, job)
            ctx.storage.download(job.input_key, source_path)
            download_s = time.monotonic() - started
            prepared = prepare(source_path, ctx.engines, job.model, job.size_request, job.denoise)
            bands = split.bands_to_split(ctx.settings, prepared)
            if bands:
                return split.start(ctx, job, prepared, bands, download_s)
            output_key, values = _render_and_store(ctx, job, prepared, Path(tmp), started, download_s)
        if not succeed_job(ctx, job_id, **values):
            raise LeaseLost(job_id)
    except LeaseLost:
        log.warning("job %s: lease lost, discarding this attempt's output", job_id)
        discard(ctx, output_key)
        return "lease_lost"
    except Exception as exc:  # every failure ends as a stable code on the job; an outage tries again
        discard_unless_committed(ctx, output_key, exc)
        if is_outage(exc):
            return stop_for_outage(ctx, job_id, exc)
        fail_job(ctx, job_id, exc)
        return "failed"
    # succeeded and committed: nothing from here on may discard the result it points at
    observe(job, values["timings"], values["ran"])
    log.info("job %s succeeded in %.2fs", job_id, values["timings"]["total_s"])
    return "succeeded"


def _render_and_store(ctx: WorkerContext, job: Job, prepared: Prepared, folder: Path, started: float,
                      download_s: float) -> tuple[str, dict]:
    last_report = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - last_report[0] < PROGRESS_EVERY_SECONDS:
            return
        last_report[0] = now
        # Engine progress maps to 5..95 %: decoding before and encoding after take time too.
        renew_lease(ctx, job.id, 0.05 + 0.9 * done / total)

    checkpoint_progress = {"inference": 0.95, "encode": 0.97}
    result_path = folder / f"result.{EXTENSIONS[job.output_format]}"
    rendered = finish(prepared, result_path, job.output_format, job.quality, progress,
                      checkpoint=lambda stage: renew_lease(ctx, job.id, checkpoint_progress[stage]),
                      band_pixels=ctx.settings.band_output_pixels, dpi=job.dpi)
    t = time.monotonic()
    output_key, size = store_result(ctx, job, result_path)
    timings = {"download_s": round(download_s, 4), **rendered.timings, "upload_s": round(time.monotonic() - t, 4),
               "total_s": round(time.monotonic() - started, 4)}
    return output_key, {"output_key": output_key, "output_width": rendered.width,
                        "output_height": rendered.height, "output_bytes": size, "timings": timings,
                        "ran": rendered.ran()}


def _claim_turn_through_outage(ctx: WorkerContext, message_job: str) -> Job | None:
    """``_claim_turn``, tried again while the database's connection fails (``CLAIM_RETRY_WAITS``): raised at once,
    the task ended and its message was acknowledged, so a failover of a few seconds left every job whose turn fell
    in it queued without a message until the sweeper's look for stale ones (``UPSCALER_QUEUED_STALE_SECONDS``)."""
    for wait in CLAIM_RETRY_WAITS:
        try:
            return _claim_turn(ctx, message_job)
        except Exception as exc:
            if not database_outage(exc):
                raise
            log.warning("job %s: the database is unavailable for this turn's claim; trying again in %d s: %s",
                        message_job, wait, exc)
            time.sleep(wait)
    return _claim_turn(ctx, message_job)  # the last try: an outage still there ends the task as before


def _claim_turn(ctx: WorkerContext, message_job: str) -> Job | None:
    """Claim the fairest job for this turn (``jobs.next_fair_job``), choosing again while other workers take the
    chosen ones first, until one is claimed or nothing is left: a turn given up while a job waits would leave that
    job without a message until the sweeper's next look (10 minutes)."""
    passed: list[str] = []
    while True:
        with ctx.sessions() as session:
            chosen = jobs.next_fair_job(session, message_job, passed, max_attempts=ctx.settings.max_attempts)
        if chosen is None:
            return None
        # job.started goes in the claim's transaction, so a worker killed right after claiming cannot lose it
        job = change_job(ctx, chosen, JobStatus.RUNNING,
                         lambda session, chosen=chosen: jobs.claim(session, chosen, ctx.owner,
                                                                   ctx.settings.lease_seconds,
                                                                   max_attempts=ctx.settings.max_attempts),
                         event=lambda claimed: "job.started" if claimed.attempts == 1
                         and claimed.outage_since is None else None)  # an outage's retry is not a new start
        if job is not None:
            if chosen != message_job:
                log.info("the turn of job %s's message went to job %s (fair share between tenants)",
                         message_job, chosen)
                current_job.set(chosen)  # this task's log lines name the job it runs (the task resets it)
            return job
        passed.append(chosen)


def _fetch_input(ctx: WorkerContext, job: Job) -> None:
    """Fetch ``image_url`` into the job's input key, sniffed and size-checked like an upload, and record what it is
    (once recorded, a retry downloads the stored input instead of fetching again)."""
    settings = ctx.settings
    data = fetch(job.input_url, settings.webhook_allow_private, settings.max_upload_bytes, settings.input_fetch_timeout)
    try:
        found = sniff(data, settings.max_input_pixels)
    except ImageRejected as exc:
        code = "input_unreadable" if exc.code == "unsupported_image" else exc.code
        raise JobFailure(code, str(exc)) from exc
    try:
        planned = plan(found.width, found.height, job.size_request)
    except SizeError as exc:
        raise JobFailure("output_too_large", f"the requested size: {exc}") from exc
    model = ctx.engines.catalog.get(job.model)
    violation = check_job(planned, found.width, found.height, found.alpha, job.output_format, settings, model) \
        if model else None  # a model this worker does not know: engine_failed when it runs
    if violation:
        raise JobFailure(violation.code, violation.message)
    charged_at = _charge_quota(ctx, job, planned.megapixels)
    try:
        # an attempt that stopped before recording may have stored an earlier fetch: replaced, since the facts
        # recorded below are this fetch's (kept, an address now serving another image made a result of the old one
        # under the new one's size, format and charge)
        if ctx.storage.exists(job.input_key):
            ctx.storage.delete(job.input_key)
        ctx.storage.put_bytes(job.input_key, data, CONTENT_TYPES[found.format])
        facts = {"input_format": found.format, "input_bytes": len(data), "input_width": found.width,
                 "input_height": found.height, "output_width": planned.width, "output_height": planned.height,
                 "charged_megapixels": planned.megapixels if charged_at else None, "charged_at": charged_at}
        with unit_of_work(ctx.sessions) as session:
            if not jobs.record_input(session, job.id, ctx.owner, **facts):
                raise LeaseLost(job.id)
    except BaseException:  # not recorded: the next attempt fetches and charges again, so this charge goes back
        if charged_at:
            quota.refund_pending(ctx.settings, job.tenant, job.id, ctx.owner)
        raise
    if charged_at:
        quota.settled(ctx.settings, job.id, ctx.owner)
    for name, value in facts.items():
        setattr(job, name, value)


def _charge_quota(ctx: WorkerContext, job: Job, megapixels: float) -> datetime | None:
    """Charge a fetched image's output megapixels to its tenant's daily quota, as the API charges an upload at
    submit (``shared.quota``); past the quota the job fails ``quota_exceeded`` before its input is stored.
    Returns when it was charged: None with no quota, or with Redis unreachable, where the job runs uncharged as
    the API lets an upload through then."""
    with ctx.sessions() as session:
        tenant = tenants.tenant_named(session, job.tenant)
    client = quota.client_for(ctx.settings)
    try:  # an earlier attempt's charge that no record holds (its worker killed in between) first goes back
        quota.give_back_pending(client, job.tenant, job.id)
        return quota.charge(client, job.tenant, quota.daily_limit(tenant, ctx.settings), megapixels,
                            pending_job=(job.id, ctx.owner))
    except quota.LargerThanQuota as exc:
        raise JobFailure("output_too_large", str(exc)) from None
    except quota.QuotaExceeded as exc:
        raise JobFailure("quota_exceeded", f"{exc} (charged when the image at image_url was fetched)") from None
    except redis.RedisError as exc:
        log.warning("job %s: daily quota not charged (Redis unavailable): %s", job.id, exc)
        return None
    finally:
        client.close()
