"""One big job across many workers: its output cut into bands, each band a task any free worker takes.

Why: more workers otherwise only mean more jobs per hour; a print shop's one poster took as long on ten
GPUs as on one. The flow, with the database as the source of truth (``shared.job_bands``):

1. the worker that claims the job decodes it, chooses the network, cuts the output into bands
   (``worker.bands``, on tile rows, so the result is bit-identical to a single worker's where the workers compute
   in one precision, ``worker.engine.precision``) and records them;
2. it publishes one ``run_band`` task per band, last band first, so other workers take bands from the end;
3. each band is claimed under its own lease, computed from the input (kept decoded between bands of the
   same job), uploaded as raw rows and counted on the job by a conditional UPDATE;
4. meanwhile the job's own worker *gathers*: it goes through the bands front to back, computing the next one
   itself when it can claim it (its rows go straight into the row file), else taking it from storage once
   another worker has finished it, else working a later band while it waits. Gathering overlaps the other
   workers' bands, so once the last band is in only the encoding remains (``worker.streaming``); then it stores
   the output, finishes the job and deletes the band files.

A killed worker's band is published again by the sweeper once its lease expires (after ``max_attempts`` such
deaths the job fails ``worker_lost``, ``job_bands.fail_lost``); if the gathering worker dies,
its job's lease expires and ``run_job`` takes the job back (``resume``): bands it had gathered without storing
them are opened again, and the new worker gathers from the start. A cancel stops the
remaining bands at their next lease renewal. A band's failure fails the job with that band's code, while its
worker still holds the band (``jobs.take_over``): a late error of a band redone elsewhere is not the job's.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from shared import job_bands, jobs, metrics
from shared.db import unit_of_work
from shared.limits import EXTENSIONS
from shared.models import Job, JobBand, utcnow
from shared.queue import enqueue_band
from shared.settings import Settings
from shared.states import TERMINAL, JobStatus
from shared.storage import BANDS, ObjectMissing, new_key
from worker.bands import Band, plan_bands
from worker.context import WorkerContext
from worker.engine.registry import ModelUnloadable, UnknownModel
from worker.engine.selection import ran_condition
from worker.imaging import DecodedImage, decode
from worker.outcomes import (
    LeaseLost,
    discard,
    discard_unless_committed,
    fail_job,
    is_outage,
    observe,
    renew_lease,
    stop_for_outage,
    store_result,
    succeed_job,
)
from worker.render import Prepared, band_pixels, keep_depth, output_rows, ran_record, scaled_metadata, streamable
from worker.scratch import scratch
from worker.streaming import BAND_SUFFIX, RowFile, WrongBandSize, encode_rows, write_band

log = logging.getLogger(__name__)
RENEW_EVERY_SECONDS = 1.0
GATHER_POLL_SECONDS = 0.2  # how often the gathering worker looks whether another worker's band is done


def bands_to_split(settings: Settings, prepared: Prepared) -> list[Band] | None:
    """The bands to split ``prepared`` into, or None to run it on this worker alone: split when the output is
    streamable, at least ``split_output_pixels`` (0 turns splitting off) and more than one band (a one-band job,
    an image one tile row tall, sent its rows through storage for nothing). Bands are whole tile rows of at most
    ``band_output_pixels`` where they fit."""
    width, height = prepared.planned.resize_to
    if not (settings.split_output_pixels > 0 and width * height >= settings.split_output_pixels
            and streamable(prepared.engine, prepared.decoded, prepared.planned, settings.band_output_pixels)):
        return None
    rows, columns = prepared.decoded.rgb.shape[:2]
    bands = plan_bands(prepared.engine.band_cuts(rows, columns), columns, prepared.planned.chain[0],
                       settings.band_output_pixels)
    return bands if len(bands) > 1 else None


def start(ctx: WorkerContext, job: Job, prepared: Prepared, bands: list[Band], download_s: float) -> str:
    """Cut a claimed job into ``bands`` (``bands_to_split``), publish them and work on them too; returns what
    this worker saw."""
    scale = prepared.planned.chain[0]
    decoded = keep_depth(prepared.decoded, job.output_format, True)
    ran = {**ran_record(prepared.selection, (scale,), False, prepared.engine.precision, len(bands), decoded.bits),
           "build": prepared.engine.build}  # every band from this build (kept with the job, not shown)
    with unit_of_work(ctx.sessions) as session:
        timings = {"download_s": round(download_s, 4), **{k: round(v, 4) for k, v in prepared.timings.items()}}
        if not job_bands.plan(session, job.id, ctx.owner, [(b.y0, b.y1) for b in bands], ran, timings):
            raise LeaseLost(job.id)
    ctx.band_inputs.clear()
    ctx.band_inputs[job.input_key] = decoded
    log.info("job %s split into %d bands", job.id, len(bands))
    _publish(ctx, job, [b.index for b in reversed(bands)])
    return gather(ctx, job.id)


def same_build(ctx: WorkerContext, job: Job) -> bool:
    """Whether this worker's network is the build the job's bands were planned with (``Engine.build``)."""
    build = ctx.engines.get(job.ran["model"]).build
    return job.ran.get("build", build) == build  # a plan recorded before builds were: taken as this one's


def start_over(ctx: WorkerContext, job: Job) -> None:
    """Drop a split job's plan and its stored bands: it was planned on another build of the network (a rolling
    update of the weights, another tile size or precision), whose bands this worker's cannot join. The job then
    runs afresh here, planned on this build."""
    log.warning("job %s: planned on another build of its network (%s); starting it over on this one (%s)",
                job.id, job.ran.get("build"), ctx.engines.get(job.ran["model"]).build)
    _drop_band_results(ctx, job.id)
    with unit_of_work(ctx.sessions) as session:
        if not job_bands.forget_plan(session, job.id, ctx.owner):
            raise LeaseLost(job.id)
    ctx.band_inputs.clear()
    job.bands_total, job.ran = None, None


def resume(ctx: WorkerContext, job: Job) -> str:
    """A split job claimed again (its gathering worker vanished): gather it from the start."""
    with unit_of_work(ctx.sessions) as session:
        if not job_bands.reopen_unstored(session, job.id, ctx.owner):
            raise LeaseLost(job.id)
        left = [b.index for b in job_bands.bands_of(session, job.id) if b.status != job_bands.DONE]
    _publish(ctx, job, list(reversed(left)))
    return gather(ctx, job.id)


def _publish(ctx: WorkerContext, job: Job, indexes: list[int]) -> None:
    with ctx.sessions() as session:
        priority = jobs.fair_priority(session, job.id)
    try:
        for index in indexes:
            enqueue_band(ctx.celery, job.id, index, priority)
    except Exception:  # the broker is down: the gathering worker works every band itself; the sweeper republishes
        log.warning("could not publish the bands of job %s; working them here", job.id, exc_info=True)


def _compute(ctx: WorkerContext, job: Job, band: JobBand) -> np.ndarray | None:
    """Claim ``band`` and compute its rows (in the output's mode); None when another worker has it, it is done,
    or the job was planned again since ``job`` and ``band`` were read."""
    with unit_of_work(ctx.sessions) as session:
        if not job_bands.claim(session, job.id, band.index, ctx.owner, ctx.settings.lease_seconds):
            return None
        claimed = session.get(JobBand, (job.id, band.index))
        if (claimed.y0, claimed.y1) != (band.y0, band.y1) or session.scalar(
                select(Job.ran).where(Job.id == job.id)) != job.ran:
            # taken back and planned again (another build: a rolling update) between our read and the claim: the
            # claim is undone, or these rows of the old network would be joined under the new plan, unseen
            session.rollback()
            return None
        stale = claimed.result_key
    # what an attempt killed around its upload may have left: deleted, and then no longer named (a resumed job
    # read the deleted object, and failed "input_missing"); a delete that failed keeps its name, for the sweeper
    if stale and discard(ctx, stale):
        with unit_of_work(ctx.sessions) as session:
            job_bands.stage(session, job.id, band.index, ctx.owner, None)
    decoded = _decoded_input(ctx, job)
    engine = ctx.engines.get(job.ran["model"])
    last = [time.monotonic()]

    def renew(_done: int, _total: int) -> None:
        if time.monotonic() - last[0] >= RENEW_EVERY_SECONDS:
            last[0] = time.monotonic()
            _renew_band(ctx, job.id, band.index)

    started = time.monotonic()
    pixels = band_pixels(engine, decoded, job.ran["network_scales"][0], (band.y0, band.y1), ran_condition(job.ran),
                         renew)
    # engine time is counted where a band runs (the job's megapixels once, when it is assembled): with none,
    # throughput (megapixels / engine seconds) read as unbounded while split jobs ran
    metrics.INFERENCE_SECONDS.labels(job.ran["model"], str(job.ran["network_scales"][0])).inc(
        time.monotonic() - started)
    return pixels


def _complete(ctx: WorkerContext, job_id: str, index: int, gathering: bool = False) -> None:
    with unit_of_work(ctx.sessions) as session:
        if not job_bands.complete(session, job_id, index, ctx.owner, gathering):
            raise LeaseLost(job_id)


def run_band(ctx: WorkerContext, job_id: str, index: int) -> str:
    """One band for the gathering worker, stored as raw rows (a ``run_band`` task); safe to run twice: the claim
    decides. Returns band_done, or skipped when the band was not claimable or the job ended meanwhile."""
    with ctx.sessions() as session:
        job, band = session.get(Job, job_id), session.get(JobBand, (job_id, index))
        session.expunge_all()
    if job is None or band is None or not job.ran:  # gone, or its plan dropped meanwhile (start_over)
        return "skipped"
    try:
        planned_here = same_build(ctx, job)
    except ModelUnloadable as exc:  # its files broken here: claims nothing (a gatherer that cannot either fails it)
        log.warning("job %s band %d: %s; left to a worker that can load it", job_id, index, exc)
        return "skipped"
    except UnknownModel:  # a worker without the job's network (one of a rolling update) claims nothing
        log.info("job %s band %d: this worker has no %s; left to one that has", job_id, index, job.ran["model"])
        return "skipped"
    key = None
    try:
        if not planned_here:  # its pixels would not join the others': left to the gatherer (or a twin)
            log.info("job %s band %d: planned on another build of %s; left to a worker running that one", job_id,
                     index, job.ran["model"])
            return "skipped"
        pixels = _compute(ctx, job, band)
        if pixels is None:
            return "skipped"
        with scratch("band") as tmp:
            path = Path(tmp) / f"band{BAND_SUFFIX}"
            write_band(pixels, path)
            del pixels
            key = new_key(BANDS, BAND_SUFFIX.lstrip("."))
            with unit_of_work(ctx.sessions) as session:
                if not job_bands.stage(session, job_id, index, ctx.owner, key):
                    raise LeaseLost(job_id)
            ctx.storage.put_file(key, path, "application/octet-stream")
        _complete(ctx, job_id, index)
        log.info("job %s band %d done", job_id, index)
        return "band_done"
    except Exception as exc:
        return _stopped(ctx, job_id, key, exc, lost="skipped", band=index)


def gather(ctx: WorkerContext, job_id: str) -> str:
    """The job's own worker: bands front to back into the row file, then encode, store and finish the job."""
    with ctx.sessions() as session:
        job = session.get(Job, job_id)
        bands = job_bands.bands_of(session, job_id)
        session.expunge_all()
    output_key = None
    try:
        with scratch("assemble") as tmp:
            scale = job.ran["network_scales"][0]
            decoded = _decoded_input(ctx, job)
            meta = scaled_metadata(decoded, scale, job.dpi)
            rows = output_rows(Path(tmp), decoded, scale)
            for position, band in enumerate(bands):
                _gather_band(ctx, job, band, bands[position + 1:], rows, scale)
            rows.close()
            renew_lease(ctx, job_id)  # a cancel meanwhile stops it before the encoding, the longest step left
            bands_s = (utcnow() - job.started_at).total_seconds()  # first step and every band, on all workers
            t = time.monotonic()
            result_path = Path(tmp) / f"result.{EXTENSIONS[job.output_format]}"
            width, height = encode_rows(rows.path, result_path, job.output_format, job.quality, meta)
            renew_lease(ctx, job_id, job_bands.BANDS_PROGRESS_TO)
            output_key, size = store_result(ctx, job, result_path)
        ctx.band_inputs.clear()
        timings = {**(job.timings or {}), "bands_s": round(bands_s, 4), "assemble_s": round(time.monotonic() - t, 4),
                   "total_s": round((utcnow() - job.started_at).total_seconds(), 4)}
        if not succeed_job(ctx, job_id, output_key=output_key, output_width=width, output_height=height,
                           output_bytes=size, timings=timings):
            raise LeaseLost(job_id)
    except Exception as exc:
        ctx.band_inputs.clear()
        return _stopped(ctx, job_id, output_key, exc, lost="lease_lost")
    # succeeded and committed: the result stays whatever happens next; a band file that cannot be removed
    # now is removed with the job at retention (the sweeper deletes its bands' keys)
    observe(job, {**timings, "inference_s": 0.0}, job.ran)
    try:
        _drop_band_results(ctx, job_id)
    except SQLAlchemyError:
        log.warning("job %s: its band files stay until retention (database unavailable)", job_id, exc_info=True)
    log.info("job %s assembled from %d bands", job_id, len(bands))
    return "succeeded"


def _gather_band(ctx: WorkerContext, job: Job, band: JobBand, later: list[JobBand], rows: RowFile,
                 scale: int) -> None:
    """Append ``band``'s rows: computed here if it can be claimed, else from storage once it is done; while
    another worker is on it, work a later band (stored for its turn) or wait."""
    length = (band.y1 - band.y0) * scale
    renewed = time.monotonic()
    while True:
        with ctx.sessions() as session:  # one read per round: this band and every later one
            now, states = utcnow(), job_bands.bands_of(session, job.id, band.index)
            done = {b.index: b.result_key for b in states if b.status == job_bands.DONE}
            # only bands a claim can take are tried: a claim of each later band every round was a write
            # transaction per band five times a second (SQLite's one writer lock, shared with every band worker)
            free = {b.index for b in states if job_bands.claimable(b, now)}
        if band.index in done and done[band.index] is None:  # done into another gatherer's own file: lost to us
            log.warning("job %s: band %d was done by a gathering worker that lost the job; computing it again",
                        job.id, band.index)
            _reopen_lost(ctx, job.id, band.index)
            continue
        if band.index in done:
            renew_lease(ctx, job.id)  # a cancel stops the gathering at the next band, not after every download
            try:  # a missing object fails before any byte is appended
                rows.append_from(lambda target, key=done[band.index]: ctx.storage.download_to(key, target), length)
                return
            except (ObjectMissing, WrongBandSize):
                log.warning("job %s: the stored rows of band %d are gone or cut short; computing them again",
                            job.id, band.index)
                discard(ctx, done[band.index])
                _reopen_lost(ctx, job.id, band.index)
                continue
        pixels = _compute(ctx, job, band)
        if pixels is not None:
            rows.append(pixels)
            del pixels
            _complete(ctx, job.id, band.index, gathering=True)
            return
        if not any(run_band(ctx, job.id, other.index) == "band_done" for other in later if other.index in free):
            time.sleep(GATHER_POLL_SECONDS)
        if time.monotonic() - renewed >= RENEW_EVERY_SECONDS:  # not every poll: the job's row is a write lock
            renew_lease(ctx, job.id)
            renewed = time.monotonic()


def _reopen_lost(ctx: WorkerContext, job_id: str, index: int) -> None:
    with unit_of_work(ctx.sessions) as session:
        if not job_bands.reopen_lost(session, job_id, ctx.owner, index):
            raise LeaseLost(job_id)


def _stopped(ctx: WorkerContext, job_id: str, key: str | None, exc: Exception, lost: str,
             band: int | None = None) -> str:
    """A band (``band``) or the assembly could not finish: the object it was writing goes (unless a commit naming
    it may have landed); a lost lease (canceled job, band taken over) leaves the job to whoever has it, returning
    ``lost``; any other error fails the job."""
    discard_unless_committed(ctx, key, exc)
    if isinstance(exc, LeaseLost):
        log.warning("split job %s: lease lost (canceled, or taken over by another worker)", job_id)
        _release_bands(ctx, job_id)  # one still held here (a gathering worker that lost the job had claimed its
        # next band) is free for the next claim at once, not locked under a lease no one renews
        _drop_band_results_if_ended(ctx, job_id)
        return lost
    if is_outage(exc):  # the bands done stay; the bands held here are handed back for the next claim
        _release_bands(ctx, job_id)
        return stop_for_outage(ctx, job_id, exc) if lost == "lease_lost" else lost
    return _fail(ctx, job_id, exc, lost, band)


def _release_bands(ctx: WorkerContext, job_id: str) -> None:
    """Best effort: in a database outage the bands' leases run out instead, and the sweeper publishes them."""
    try:
        with unit_of_work(ctx.sessions) as session:
            job_bands.release(session, job_id, ctx.owner)
    except SQLAlchemyError:
        log.warning("job %s: the bands held here wait out their leases (database unavailable)", job_id)


def _fail(ctx: WorkerContext, job_id: str, exc: Exception, lost: str, band: int | None) -> str:
    """A band or the assembly failed: the job fails with its code (whoever started it), band files go; unless
    this worker no longer holds that band (or the job): then its error is of a run another worker has redone."""
    with unit_of_work(ctx.sessions) as session:
        took = jobs.take_over(session, job_id, ctx.owner, ctx.settings.lease_seconds, band)
    if took:
        fail_job(ctx, job_id, exc)
    else:
        log.warning("split job %s: an error of a band (or job) no longer held here, left to its holder: %s",
                    job_id, exc)
    _drop_band_results_if_ended(ctx, job_id)
    return "failed" if took else lost


def _decoded_input(ctx: WorkerContext, job: Job) -> DecodedImage:
    """The job's input, decoded once per worker process for all the bands it runs of that job."""
    cached = ctx.band_inputs.get(job.input_key)
    if cached is None:
        with scratch("band") as tmp:
            source = Path(tmp) / "input"
            ctx.storage.download(job.input_key, source)
            cached = keep_depth(decode(source), job.output_format, True)  # as the job's first worker did
        ctx.band_inputs.clear()  # one job's input at a time: bounded memory
        ctx.band_inputs[job.input_key] = cached
    return cached


def _renew_band(ctx: WorkerContext, job_id: str, index: int) -> None:
    with unit_of_work(ctx.sessions) as session:
        if not job_bands.renew(session, job_id, index, ctx.owner, ctx.settings.lease_seconds):
            raise LeaseLost(job_id)


def _drop_band_results_if_ended(ctx: WorkerContext, job_id: str) -> None:
    """A canceled or failed job's band files are of no use: delete them now (the sweeper also does, later).
    A job queued again (its gathering worker's lease ran out) is not ended: its next claim resumes from them."""
    with ctx.sessions() as session:
        job = session.get(Job, job_id)
        if job is None or JobStatus(job.status) not in TERMINAL:
            return
    _drop_band_results(ctx, job_id)


def _drop_band_results(ctx: WorkerContext, job_id: str) -> None:
    """Delete the job's stored bands, and their keys with them (a key left named sent the sweeper to delete it
    again: two more requests a band on S3)."""
    with ctx.sessions() as session:
        stored = [(b.index, b.result_key) for b in job_bands.bands_of(session, job_id) if b.result_key]
    gone = [(index, key) for index, key in stored if discard(ctx, key)]
    if gone:
        with unit_of_work(ctx.sessions) as session:
            for index, key in gone:
                job_bands.forget_result(session, job_id, index, key)
