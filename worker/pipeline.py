"""One job from claim to result: the work a ``run_job`` task does.

Safe to run twice for the same id: the database lease decides who works, a worker that loses its
lease (sweeper requeued the job, or it was canceled) stops at the next tile and removes what it
wrote, and every result is stored under a fresh key so nothing is ever overwritten.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from PIL import Image, UnidentifiedImageError

from shared import jobs, metrics
from shared.db import unit_of_work
from shared.formats import CONTENT_TYPES, ImageRejected, sniff
from shared.limits import EXTENSIONS, OUTPUT_FORMATS, check_output
from shared.models import Job
from shared.sizing import SizeError, plan
from shared.states import JobStatus
from shared.storage import ObjectMissing, StorageError, new_key
from shared.transitions import change_job
from worker.context import WorkerContext
from worker.engine.registry import UnknownModel
from worker.fetch import FetchFailed, fetch
from worker.imaging import UnreadableImage
from worker.render import render

log = logging.getLogger(__name__)
PROGRESS_EVERY_SECONDS = 1.0


class LeaseLost(RuntimeError):
    """Another worker owns the job now, or it was canceled: stop without writing anything."""


class JobFailure(RuntimeError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def run_job(ctx: WorkerContext, job_id: str) -> str:
    """Process one job; returns what happened: succeeded, failed, skipped or lease_lost."""
    # job.started goes in the claim's transaction, so a worker killed right after claiming cannot lose it.
    job = change_job(ctx, job_id, JobStatus.RUNNING,
                     lambda session: jobs.claim(session, job_id, ctx.owner, ctx.settings.lease_seconds),
                     event=lambda claimed: "job.started" if claimed.attempts == 1 else None)
    if job is None:
        log.info("job %s not claimable (running elsewhere, finished or unknown): skipped", job_id)
        return "skipped"
    if job.staged_output_key:  # a previous attempt died around its upload: remove what it may have left
        _discard(ctx, job.staged_output_key)
        with unit_of_work(ctx.sessions) as session:
            jobs.stage_output(session, job_id, ctx.owner, None)
    output_key = None
    try:
        output_key, values = _process(ctx, job)
        if not _finish(ctx, job_id, JobStatus.SUCCEEDED, progress=1.0, **values):
            raise LeaseLost(job_id)
        _observe(job, values["timings"], values["ran"])
        log.info("job %s succeeded in %.2fs", job_id, values["timings"]["total_s"])
        return "succeeded"
    except LeaseLost:
        log.warning("job %s: lease lost, discarding this attempt's output", job_id)
        _discard(ctx, output_key)
        return "lease_lost"
    except Exception as exc:  # every failure ends as a stable code on the job
        failure = _classify(exc)
        log.log(logging.ERROR if failure.code == "internal_error" else logging.WARNING,
                "job %s failed: %s: %s", job_id, failure.code, failure, exc_info=failure.code == "internal_error")
        _discard(ctx, output_key)
        _finish(ctx, job_id, JobStatus.FAILED, error_code=failure.code, error_message=str(failure)[:2000])
        return "failed"


def _observe(job: Job, timings: dict[str, float], ran: dict) -> None:
    """Metrics by the network that ran (``auto`` resolves per input) and its scale (1, 2, 3, 4 or 8)."""
    megapixels = job.input_width * job.input_height / 1e6
    model, scale = ran["model"], str(math.prod(ran["network_scales"]) if ran["network_scales"] else 1)
    metrics.JOB_DURATION.labels(model, scale).observe(timings["total_s"])
    metrics.JOB_MEGAPIXELS.labels(model).observe(megapixels)
    metrics.MEGAPIXELS_PROCESSED.labels(model, scale).inc(megapixels)
    metrics.INFERENCE_SECONDS.labels(model, scale).inc(timings["inference_s"])


def _finish(ctx: WorkerContext, job_id: str, status: JobStatus, **values) -> bool:
    """End our job (event, publish and count through the one transition function); False if no longer ours."""
    return change_job(ctx, job_id, status, lambda session: jobs.finish(session, job_id, ctx.owner, status, **values),
                      code=values.get("error_code") or "") is not None


def _process(ctx: WorkerContext, job: Job) -> tuple[str, dict]:
    started = time.monotonic()
    last_report = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - last_report[0] < PROGRESS_EVERY_SECONDS:
            return
        last_report[0] = now
        # Engine progress maps to 5..95 %: decoding before and encoding after take time too.
        _renew(ctx, job, 0.05 + 0.9 * done / total)

    checkpoint_progress = {"inference": 0.95, "encode": 0.97}
    with tempfile.TemporaryDirectory(prefix="upscaler-job-") as tmp:
        source_path, result_path = Path(tmp) / "input", Path(tmp) / f"result.{EXTENSIONS[job.output_format]}"
        t = time.monotonic()
        if job.input_url and job.input_bytes is None:
            _fetch_input(ctx, job)
        ctx.storage.download(job.input_key, source_path)
        download_s = time.monotonic() - t
        rendered = render(source_path, result_path, ctx.engines, job.model, job.size_request, job.output_format,
                          job.quality, progress, checkpoint=lambda stage: _renew(ctx, job, checkpoint_progress[stage]),
                          denoise=job.denoise)
        t = time.monotonic()
        output_key = new_key("results", EXTENSIONS[job.output_format])
        with unit_of_work(ctx.sessions) as session:
            if not jobs.stage_output(session, job.id, ctx.owner, output_key):
                raise LeaseLost(job.id)
        size = result_path.stat().st_size
        try:
            ctx.storage.put_file(output_key, result_path, OUTPUT_FORMATS[job.output_format])
        except BaseException:  # a failed or interrupted upload may have left part of the object behind
            _discard(ctx, output_key)
            raise
        upload_s = time.monotonic() - t
    timings = {"download_s": round(download_s, 4), **rendered.timings, "upload_s": round(upload_s, 4),
               "total_s": round(time.monotonic() - started, 4)}
    return output_key, {"output_key": output_key, "output_width": rendered.width,
                        "output_height": rendered.height, "output_bytes": size, "timings": timings,
                        "ran": rendered.ran()}


def _fetch_input(ctx: WorkerContext, job: Job) -> None:
    """Fetch ``image_url`` into the job's input key (once: a retry finds it stored), sniffed and size-checked
    like an upload, and record what it is."""
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
    violation = check_output(planned.width, planned.height, job.output_format, settings.max_output_pixels)
    if violation:
        raise JobFailure(violation.code, violation.message)
    if not ctx.storage.exists(job.input_key):  # an attempt that died before recording may have stored it
        ctx.storage.put_bytes(job.input_key, data, CONTENT_TYPES[found.format])
    facts = {"input_format": found.format, "input_bytes": len(data), "input_width": found.width,
             "input_height": found.height, "output_width": planned.width, "output_height": planned.height}
    with unit_of_work(ctx.sessions) as session:
        if not jobs.record_input(session, job.id, ctx.owner, **facts):
            raise LeaseLost(job.id)
    for name, value in facts.items():
        setattr(job, name, value)


def _renew(ctx: WorkerContext, job: Job, progress: float) -> None:
    """Extend the lease and record progress; raise ``LeaseLost`` if the job is no longer ours."""
    with unit_of_work(ctx.sessions) as session:
        if not jobs.renew(session, job.id, ctx.owner, ctx.settings.lease_seconds, progress):
            raise LeaseLost(job.id)


def _classify(exc: Exception) -> JobFailure:
    if isinstance(exc, JobFailure):
        return exc
    if isinstance(exc, ObjectMissing):
        return JobFailure("input_missing", "the input image is no longer in storage")
    if isinstance(exc, StorageError):
        return JobFailure("storage_failed", f"object storage failed: {exc}")
    if isinstance(exc, FetchFailed):
        return JobFailure(exc.code, str(exc))
    if isinstance(exc, UnreadableImage):
        return JobFailure("input_unreadable", str(exc))
    if isinstance(exc, (UnidentifiedImageError, Image.DecompressionBombError, SyntaxError)):
        return JobFailure("input_unreadable", "the input could not be decoded as an image")
    if isinstance(exc, SoftTimeLimitExceeded):
        return JobFailure("time_limit", "the job ran past its time limit")
    if isinstance(exc, UnknownModel):
        return JobFailure("engine_failed", f"this worker has no model {exc}")
    if isinstance(exc, OSError) and "image file" in str(exc):
        return JobFailure("input_unreadable", "the input could not be decoded as an image")
    return JobFailure("internal_error", f"{type(exc).__name__}: {exc}")


def _discard(ctx: WorkerContext, key: str | None) -> None:
    if key is None:
        return
    try:
        ctx.storage.delete(key)
    except StorageError:
        log.exception("could not remove orphan result %s", key)
