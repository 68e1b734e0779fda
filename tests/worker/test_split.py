"""One job across many workers: bands as tasks, exact assembly, killed workers, cancel, failures.

Each "worker" is its own ``WorkerContext`` (own owner id, database pool and engines) on the same database,
storage and Redis, as separate processes would be; the chaos benchmark does the same with real processes.
"""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import redis
from PIL import Image

from shared import job_bands, jobs, metrics
from shared.db import unit_of_work
from shared.job_view import job_view
from shared.models import JobBand, utcnow
from shared.queue import INFERENCE_QUEUE, queue_depth
from shared.states import JobStatus
from shared.transitions import change_job
from tests.factories import make_job, reload, seconds_ago
from worker import pipeline, split
from worker.context import WorkerContext
from worker.engine.registry import EngineRegistry, UnknownModel
from worker.sweeper import sweep

WIDTH, HEIGHT = 100, 76


@pytest.fixture
def split_settings(settings):
    """Small tiles and bands, so a 100x76 input is cut into several bands; a Redis database of its own."""
    return settings.with_overrides(tile_size=48, band_output_pixels=WIDTH * 4 * 40, split_output_pixels=1,
                                   redis_url=settings.redis_url.rsplit("/", 1)[0] + "/7")


@pytest.fixture
def workers(split_settings):
    contexts = [WorkerContext.create(split_settings) for _ in range(3)]
    redis.Redis.from_url(split_settings.redis_url).flushdb()
    yield contexts
    redis.Redis.from_url(split_settings.redis_url).flushdb()
    for context in contexts:
        context.engine.dispose()


def _photo(mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.stack([xx * 2.5, yy * 3, (xx + yy) * 1.4], -1) + rng.normal(0, 12, (HEIGHT, WIDTH, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).convert(mode).save(buffer, "PNG")
    return buffer.getvalue()


def _job(ctx, db_session, data: bytes | None = None, **overrides):
    key = f"inputs/split/{np.random.default_rng().integers(1 << 40)}.png"
    ctx.storage.put_bytes(key, data or _photo(), "image/png")
    values = dict(model="residual_sr", scale=2, input_key=key, input_width=WIDTH, input_height=HEIGHT)
    return make_job(db_session, **{**values, **overrides})


def _pixels(ctx, job) -> np.ndarray:
    with Image.open(io.BytesIO(ctx.storage.get_bytes(job.output_key))) as out:
        return np.asarray(out)


def _unsplit(ctx, db_session, **overrides) -> np.ndarray:
    single = WorkerContext.create(ctx.settings.with_overrides(split_output_pixels=0))
    try:
        job = _job(single, db_session, **overrides)
        assert pipeline.run_job(single, job.id) == "succeeded"
        job = reload(db_session, job)
        assert not job.bands_total
        return _pixels(single, job)
    finally:
        single.engine.dispose()


def _planned_only(ctx, db_session, monkeypatch, **overrides):
    """A split job whose first worker recorded and published the bands, then gathered none of them (yet)."""
    job = _job(ctx, db_session, **overrides)
    monkeypatch.setattr(split, "gather", lambda *_args: "split")
    assert pipeline.run_job(ctx, job.id) == "split"
    monkeypatch.undo()
    return reload(db_session, job)


def _dies_after_its_upload(worker, job) -> None:
    """``worker`` claims band 1 of ``job``, stages and uploads half of it, and dies (its lease still holds)."""
    with unit_of_work(worker.sessions) as session:
        assert job_bands.claim(session, job.id, 1, worker.owner, 60)
        assert job_bands.stage(session, job.id, 1, worker.owner, "bands/dead/attempt.raw")
    worker.storage.put_bytes("bands/dead/attempt.raw", b"half a band", "application/octet-stream")


@pytest.mark.parametrize("scale,band_rows", [(2, 40), (3, 20), (4, 60)])
def test_a_split_job_equals_the_single_worker_result_bit_for_bit(workers, db_session, scale, band_rows):
    ctx = workers[0]
    ctx.settings = ctx.settings.with_overrides(band_output_pixels=WIDTH * scale * scale * band_rows)
    job = _job(ctx, db_session, scale=scale)
    engine_seconds = metrics.INFERENCE_SECONDS.labels("residual_sr", str(scale))
    before = engine_seconds._value.get()
    assert pipeline.run_job(ctx, job.id) == "succeeded"  # one worker: it ran every band and assembled
    assert engine_seconds._value.get() > before  # its bands' engine time counts (it read 0: throughput unbounded)
    job = reload(db_session, job)
    assert job.bands_total >= 2 and job.bands_done == job.bands_total and job.ran["bands"] == job.bands_total
    assert (job.status, job.progress, job.output_width, job.output_height) == ("succeeded", 1.0, WIDTH * scale,
                                                                              HEIGHT * scale)
    assert np.array_equal(_pixels(ctx, job), _unsplit(ctx, db_session, scale=scale))
    assert not list((ctx.settings.storage_dir / "bands").rglob("*.raw"))  # band files are deleted


def test_bands_run_on_every_worker_and_the_jobs_worker_gathers_them(workers, db_session, monkeypatch):
    first, second, third = workers
    job = _planned_only(first, db_session, monkeypatch)
    total = job.bands_total
    assert total >= 3 and queue_depth(redis.Redis.from_url(first.settings.redis_url), INFERENCE_QUEUE) == total
    outcomes = [split.run_band((second, third)[i % 2], job.id, i) for i in range(1, total)]
    assert outcomes == ["band_done"] * (total - 1)
    assert reload(db_session, job).status == "running" and reload(db_session, job).bands_done == total - 1
    assert split.gather(first, job.id) == "succeeded"  # computes band 0 itself, takes the others from storage
    job = reload(db_session, job)
    assert job.lease_owner is None
    assert job.status == "succeeded" and job.attempts == 1
    view = job_view(job, first.storage, first.settings, "http://127.0.0.1")
    assert (view.split.done, view.split.total) == (total, total)
    assert np.array_equal(_pixels(first, job), _unsplit(first, db_session))
    db_session.expire_all()  # the stored bands are deleted and no longer named (the sweeper deleted them again)
    assert [b.result_key for b in job_bands.bands_of(db_session, job.id)] == [None] * total
    # a band worker kept the job's decoded input for good (120 MB at the input cap, over its next job's peak)
    assert second.band_inputs
    small = make_job(db_session, model="bicubic", scale=2, input_key=job.input_key)
    assert pipeline.run_job(second, small.id) == "succeeded" and not second.band_inputs


def test_a_cleanup_failure_after_success_keeps_the_result(workers, db_session, monkeypatch):
    """Removing the band files comes after the job is committed as succeeded: a database error there once
    sent the job through the failure path, which deleted the result the succeeded job points at."""
    from sqlalchemy.exc import OperationalError

    ctx = workers[0]
    job = _job(ctx, db_session)

    def unavailable(*_args):
        raise OperationalError("SELECT", {}, Exception("database went away"))

    monkeypatch.setattr(split, "_drop_band_results", unavailable)
    assert pipeline.run_job(ctx, job.id) == "succeeded"
    job = reload(db_session, job)
    assert job.status == "succeeded" and job.bands_total >= 2
    assert np.array_equal(_pixels(ctx, job), _unsplit(ctx, db_session))  # the result is there, whole


def test_band_files_of_a_job_queued_again_are_kept_for_its_next_claim(workers, db_session, monkeypatch):
    """A band worker that loses its lease drops the job's band files only if the job has ended: a job the
    sweeper queued again (its gathering worker vanished) resumes from them (they were once deleted, and the
    resumed job failed input_missing)."""
    first, second, _ = workers
    job = _planned_only(first, db_session, monkeypatch)
    assert split.run_band(second, job.id, 1) == "band_done"
    stored = [b.result_key for b in job_bands.bands_of(db_session, job.id) if b.result_key]
    assert stored and all(second.storage.exists(key) for key in stored)
    for status, kept in (("queued", True), ("canceled", False)):
        row = reload(db_session, job)
        row.status = status
        db_session.commit()
        split._drop_band_results_if_ended(second, job.id)
        assert all(second.storage.exists(key) == kept for key in stored), status


def test_a_second_delivery_of_a_band_does_nothing(workers, db_session, monkeypatch):
    first, second, _ = workers
    job = _planned_only(first, db_session, monkeypatch)
    assert split.run_band(second, job.id, 0) == "band_done"
    assert split.run_band(second, job.id, 0) == "skipped"
    assert split.run_band(first, job.id, 0) == "skipped"
    assert reload(db_session, job).bands_done == 1


def test_a_band_of_a_killed_worker_runs_again_and_the_job_ends_once(workers, db_session, monkeypatch):
    first, second, third = workers
    job = _planned_only(first, db_session, monkeypatch)
    _dies_after_its_upload(second, job)  # band 1: claimed, uploaded, and its worker dies
    assert split.run_band(third, job.id, 1) == "skipped"  # its lease still holds
    for index in range(job.bands_total):
        if index != 1:
            assert split.run_band(third, job.id, index) == "band_done"
    db_session.query(JobBand).filter_by(job_id=job.id, index=1).update({"lease_expires_at": seconds_ago(1)})
    db_session.commit()
    redis.Redis.from_url(first.settings.redis_url).flushdb()
    assert sweep(first, first.celery).bands == 1  # published again
    assert queue_depth(redis.Redis.from_url(first.settings.redis_url), INFERENCE_QUEUE) == 1
    assert split.run_band(third, job.id, 1) == "band_done"
    assert split.gather(first, job.id) == "succeeded"
    job = reload(db_session, job)
    band = db_session.get(JobBand, (job.id, 1))
    assert (job.status, job.bands_done, band.attempts) == ("succeeded", job.bands_total, 2)
    assert not first.storage.exists("bands/dead/attempt.raw")  # the dead attempt's object was removed
    assert np.array_equal(_pixels(first, job), _unsplit(first, db_session))


def test_a_sweep_finding_stale_jobs_and_bands_reads_the_queue_once(workers, db_session, monkeypatch):
    """Both kinds of stale work are checked against one read of the inference lists (a long backlog is
    read in chunks: reading it twice a period doubled the sweeper's Redis traffic)."""
    from worker import sweeper

    first = workers[0]
    job = _planned_only(first, db_session, monkeypatch)
    db_session.query(JobBand).filter_by(job_id=job.id).update({"updated_at": seconds_ago(3600)})
    stale = _job(first, db_session, enqueued_at=seconds_ago(3600))
    db_session.commit()
    redis.Redis.from_url(first.settings.redis_url).flushdb()
    reads = []
    real = sweeper.waiting_messages
    monkeypatch.setattr(sweeper, "waiting_messages", lambda client, queue: reads.append(queue) or real(client, queue))
    report = sweep(first, first.celery)
    assert (report.enqueued, report.bands, reads) == (1, job.bands_total, ["inference"])
    assert reload(db_session, stale).enqueued_at > seconds_ago(60)


def test_a_stalled_band_is_published_again_at_its_jobs_fair_priority(workers, db_session, monkeypatch):
    """split._publish sends bands at the job's fair priority; the sweeper sent them again at level 0, so a flooding
    tenant's bands jumped the queue."""
    from shared.queue import queue_lists

    first = workers[0]
    for _ in range(2):  # the tenant had two jobs running before this one: its priority level is 1
        _job(first, db_session, created_at=seconds_ago(100), status="running", lease_owner="busy",
             lease_expires_at=seconds_ago(-600))
    job = _planned_only(first, db_session, monkeypatch)
    db_session.query(JobBand).filter_by(job_id=job.id, index=0).update({"updated_at": seconds_ago(3600)})
    db_session.commit()
    queue = redis.Redis.from_url(first.settings.redis_url)
    queue.flushdb()
    assert sweep(first, first.celery).bands == 1
    depths = {name: queue.llen(name) for name in queue_lists(INFERENCE_QUEUE)}
    assert depths[queue_lists(INFERENCE_QUEUE)[1]] == 1 and sum(depths.values()) == 1


def test_a_job_whose_workers_all_vanished_is_finished_by_the_next_claim(workers, db_session, monkeypatch):
    first, _, third = workers
    job = _planned_only(first, db_session, monkeypatch)
    assert split.run_band(first, job.id, 0) == "band_done"  # stored
    band = db_session.get(JobBand, (job.id, 1))
    assert split._compute(first, job, band) is not None  # gathered into the vanished worker's own row file only
    split._complete(first, job.id, 1)
    assert reload(db_session, job).bands_done == 2
    # the first attempt began a minute ago
    db_session.query(type(job)).filter_by(id=job.id).update({"lease_expires_at": seconds_ago(1),
                                                             "started_at": seconds_ago(60)})
    db_session.commit()
    assert sweep(first, first.celery).requeued == 1  # the job goes back to the queue, its stored bands stay
    assert pipeline.run_job(third, job.id) == "succeeded"  # band 1 is computed again, band 0 taken from storage
    # claimed once since its reopen, which started its count over: its first run ended, it lost no worker
    assert db_session.get(JobBand, (job.id, 1)).attempts == 1
    job = reload(db_session, job)
    assert (job.status, job.attempts, job.bands_done) == ("succeeded", 2, job.bands_total)
    # its start and total time are the job's, from its first attempt, not the resuming attempt's few seconds
    assert (utcnow() - job.started_at).total_seconds() >= 60 and job.timings["total_s"] >= 60
    assert np.array_equal(_pixels(first, job), _unsplit(first, db_session))


def test_a_frozen_gatherer_that_comes_back_cannot_spoil_the_resumed_job(workers, db_session, monkeypatch):
    """A gathering worker frozen past its lease (a paused container), then thawed while the job was resumed
    elsewhere, marked its bands done into its own row file, which no one reads: the resumed job took them for
    stored and failed internal_error (download_to(None)). Its completions now need the job's lease; a band done
    with nothing stored is computed again. The resumed job's progress starts from its stored bands, not 0."""
    first, second, third = workers
    job = _planned_only(first, db_session, monkeypatch)  # first gathers: it holds the job's lease
    assert split.run_band(second, job.id, 0) == "band_done"  # stored
    band = db_session.get(JobBand, (job.id, 1))
    assert split._compute(first, job, band) is not None  # first computes band 1 for its row file, then freezes
    db_session.query(type(job)).filter_by(id=job.id).update({"lease_expires_at": seconds_ago(1)})
    db_session.commit()
    assert sweep(first, first.celery).requeued == 1
    seen = {}
    publish = split._publish

    def thaws_meanwhile(ctx, resumed, indexes):  # third resumes the job; first thaws and finishes band 1
        seen["progress"] = reload(db_session, resumed).progress
        with pytest.raises(split.LeaseLost):
            split._complete(first, job.id, 1, gathering=True)  # refused: the job is third's now
        with unit_of_work(first.sessions) as session:  # as the unguarded completion did: done, nothing stored
            assert job_bands.complete(session, job.id, 1, first.owner)
        publish(ctx, resumed, indexes)

    monkeypatch.setattr(split, "_publish", thaws_meanwhile)
    assert pipeline.run_job(third, job.id) == "succeeded"
    assert seen["progress"] > job_bands.BANDS_PROGRESS_FROM  # band 0 stood: not back to 0
    job = reload(db_session, job)
    assert (job.status, job.bands_done) == ("succeeded", job.bands_total)
    assert np.array_equal(_pixels(first, job), _unsplit(first, db_session))


def test_bands_come_from_one_build_of_the_network(workers, split_settings, db_session, monkeypatch):
    """Band workers computed with their own tile size and weights: another tile size failed the job
    internal_error ("rows do not fall on tile rows"), other weights (a rolling update) joined with a seam. A band
    worker on another build leaves the band to the gatherer; a job resumed on another build starts over on it."""
    first, second, _ = workers
    other = WorkerContext.create(split_settings.with_overrides(tile_size=64))  # another build of residual_sr
    try:
        assert other.engines.get("residual_sr").build != first.engines.get("residual_sr").build
        job = _planned_only(first, db_session, monkeypatch)
        assert split.run_band(other, job.id, 1) == "skipped"  # not claimed: left pending
        assert db_session.get(JobBand, (job.id, 1)).status == job_bands.PENDING
        assert split.run_band(second, job.id, 2) == "band_done"
        assert split.gather(first, job.id) == "succeeded"  # computes bands 0 and 1 itself
        assert np.array_equal(_pixels(first, reload(db_session, job)), _unsplit(first, db_session))

        resumed = _planned_only(first, db_session, monkeypatch)
        assert split.run_band(second, resumed.id, 1) == "band_done"  # stored on the first build
        db_session.query(type(resumed)).filter_by(id=resumed.id).update({"lease_expires_at": seconds_ago(1)})
        db_session.commit()
        assert sweep(first, first.celery).requeued == 1
        assert pipeline.run_job(other, resumed.id) == "succeeded"  # planned again on its own build
        resumed = reload(db_session, resumed)
        assert resumed.ran["build"] == other.engines.get("residual_sr").build
        assert resumed.bands_done == resumed.bands_total == len(job_bands.bands_of(db_session, resumed.id))
        assert np.array_equal(_pixels(first, resumed), _unsplit(first, db_session))
        assert not [p for p in (split_settings.storage_dir / "bands").rglob("*") if p.is_file()]
    finally:
        other.engine.dispose()


def test_a_waiting_gatherer_tries_only_the_bands_it_could_claim(workers, db_session, monkeypatch):
    """While another worker held its next band, the gathering worker tried to claim every later band five times
    a second, held or not: a write transaction each (SQLite has one writer, shared with every band worker)."""
    first, second, _ = workers
    job = _planned_only(first, db_session, monkeypatch)
    with unit_of_work(second.sessions) as session:  # second holds every band but the first
        for index in range(1, job.bands_total):
            assert job_bands.claim(session, job.id, index, second.owner, 60)
    claims, at_first_wait = [], []
    claim = job_bands.claim
    monkeypatch.setattr(job_bands, "claim", lambda *args: claims.append(args[2]) or claim(*args))

    def wait(_seconds):  # the first wait: then second vanishes (its leases run out) and the gatherer goes on
        if not at_first_wait:
            at_first_wait.append(list(claims))
            db_session.query(JobBand).filter_by(job_id=job.id).update({"lease_expires_at": seconds_ago(1)})
            db_session.commit()

    monkeypatch.setattr(split.time, "sleep", wait)
    assert split.gather(first, job.id) == "succeeded"
    assert at_first_wait == [[0, 1]]  # its own band, and the next one it waits on: no held later band tried
    assert np.array_equal(_pixels(first, reload(db_session, job)), _unsplit(first, db_session))


def test_a_resumed_job_computes_again_the_bands_whose_stored_rows_are_gone(workers, db_session, monkeypatch):
    """A band taken over from a dead band worker had its stale object deleted but still named: when the gathering
    worker vanished too, the resumed job read the deleted object and failed "input_missing". The name goes with
    the object; and a done band whose object is missing anyway is computed again."""
    first, second, third = workers
    job = _planned_only(first, db_session, monkeypatch)
    _dies_after_its_upload(second, job)  # band 1: claimed, uploaded, and its worker dies
    db_session.query(JobBand).filter_by(job_id=job.id, index=1).update({"lease_expires_at": seconds_ago(1)})
    db_session.commit()
    assert split._compute(first, job, db_session.get(JobBand, (job.id, 1))) is not None  # taken over
    split._complete(first, job.id, 1)  # into the gathering worker's own row file only
    db_session.expire_all()
    assert db_session.get(JobBand, (job.id, 1)).result_key is None
    assert not first.storage.exists("bands/dead/attempt.raw")
    assert split.run_band(second, job.id, 0) == "band_done"
    first.storage.delete(db_session.get(JobBand, (job.id, 0)).result_key)  # a stored band's rows vanish
    db_session.query(type(job)).filter_by(id=job.id).update({"lease_expires_at": seconds_ago(1)})
    db_session.commit()
    assert sweep(first, first.celery).requeued == 1  # the gathering worker vanished
    assert pipeline.run_job(third, job.id) == "succeeded"
    job = reload(db_session, job)
    assert (job.status, job.bands_done) == ("succeeded", job.bands_total)
    assert np.array_equal(_pixels(first, job), _unsplit(first, db_session))


def test_a_cancel_stops_the_remaining_bands_and_removes_their_files(workers, db_session, monkeypatch):
    first, second, _ = workers
    job = _planned_only(first, db_session, monkeypatch)
    assert split.run_band(second, job.id, 0) == "band_done"
    done_key = db_session.get(JobBand, (job.id, 0)).result_key
    assert second.storage.exists(done_key)
    assert change_job(first, job.id, JobStatus.CANCELED, lambda s: jobs.cancel(s, job.id)) is not None
    assert split.run_band(second, job.id, 1) == "skipped"

    # a band running when the cancel lands stops at its next renewal and its files go
    monkeypatch.setattr(split, "RENEW_EVERY_SECONDS", 0.0)
    db_session.query(JobBand).filter_by(job_id=job.id, index=2).update({"status": "running",
                                                                          "lease_owner": second.owner})
    db_session.commit()
    with pytest.raises(split.LeaseLost):
        split._renew_band(second, job.id, 2)
    split._drop_band_results_if_ended(second, job.id)
    assert not second.storage.exists(done_key)
    job = reload(db_session, job)
    assert job.status == "canceled" and job.output_key is None


def test_the_sweeper_deletes_the_bands_of_a_job_that_ended_while_no_worker_gathered_it(workers, db_session,
                                                                                         monkeypatch):
    """Canceled (or failed worker_lost) with its gathering worker gone: nobody deleted its stored bands, raw rows
    of 3 bytes an output pixel, until retention (never with retention 0)."""
    first, second, _ = workers
    job = _planned_only(first, db_session, monkeypatch)
    assert split.run_band(second, job.id, 0) == "band_done"
    assert split.run_band(second, job.id, 1) == "band_done"
    keys = [b.result_key for b in job_bands.bands_of(db_session, job.id) if b.result_key]
    assert len(keys) == 2 and all(first.storage.exists(key) for key in keys)
    assert change_job(first, job.id, JobStatus.CANCELED, lambda s: jobs.cancel(s, job.id)) is not None
    keeping = WorkerContext.create(first.settings.with_overrides(retention_seconds=0))  # retention never deletes
    try:
        sweep(keeping, first.celery)
    finally:
        keeping.engine.dispose()
    assert not any(first.storage.exists(key) for key in keys)
    db_session.expire_all()
    assert all(b.result_key is None for b in job_bands.bands_of(db_session, job.id))


def test_a_worker_that_cannot_load_the_network_leaves_its_band(workers, db_session, monkeypatch, tmp_path):
    """A band worker whose copy of the weights is damaged claims nothing and leaves the band to one that can load
    them, as one without the network does (the task ended in the weights reader's exception, its traceback the
    only word of it); the job's own worker still computes it."""
    first, second, _ = workers
    job = _planned_only(first, db_session, monkeypatch)
    folder = tmp_path / "models"
    shutil.copytree(second.settings.models_dir, folder)
    (folder / "residual_sr.weights.h5").write_bytes(b"not weights")
    second.engines = EngineRegistry(second.settings.with_overrides(models_dir=folder))
    assert split.run_band(second, job.id, 0) == "skipped"
    db_session.expire_all()
    assert job_bands.bands_of(db_session, job.id)[0].lease_owner is None
    assert split.gather(first, job.id) == "succeeded"


def test_a_failing_band_fails_the_job_with_its_code(workers, db_session, monkeypatch):
    """A band that fails while its worker holds it fails the job with its code. A worker that cannot build the
    job's network at all (one of a rolling update, without it) claims nothing and leaves the band; the job's
    gathering worker, which cannot build it either, fails the job."""
    first, second, _ = workers
    job = _planned_only(first, db_session, monkeypatch)
    assert split.run_band(second, job.id, 0) == "band_done"

    def engine_fails(*_args):
        raise UnknownModel("residual_sr")  # any error with a code of its own, raised while the band is held

    monkeypatch.setattr(split, "band_pixels", engine_fails)
    assert split.run_band(second, job.id, 1) == "failed"
    assert (reload(db_session, job).status, reload(db_session, job).error_code) == ("failed", "engine_failed")
    assert not list((first.settings.storage_dir / "bands").rglob("*.raw"))

    monkeypatch.undo()
    job = _planned_only(first, db_session, monkeypatch)
    ran = {**job.ran, "model": "gone_network"}
    db_session.query(type(job)).filter_by(id=job.id).update({"ran": ran})
    db_session.commit()
    assert split.run_band(second, job.id, 1) == "skipped"
    assert reload(db_session, job).status == "running"
    assert split.gather(first, job.id) == "failed"
    job = reload(db_session, job)
    assert (job.status, job.error_code) == ("failed", "engine_failed")


def test_greyscale_and_jpeg_split_outputs(workers, db_session):
    ctx = workers[0]
    job = _job(ctx, db_session, data=_photo("L"))
    assert pipeline.run_job(ctx, job.id) == "succeeded"
    job = reload(db_session, job)
    assert job.bands_total >= 2 and _pixels(ctx, job).ndim == 2
    assert np.array_equal(_pixels(ctx, job), _unsplit(ctx, db_session, data=_photo("L")))
    job = _job(ctx, db_session, output_format="jpeg", quality=90)
    assert pipeline.run_job(ctx, job.id) == "succeeded"
    with Image.open(io.BytesIO(ctx.storage.get_bytes(reload(db_session, job).output_key))) as out:
        assert out.format == "JPEG" and out.size == (WIDTH * 2, HEIGHT * 2)


def test_small_jobs_alpha_and_resampled_sizes_are_not_split(workers, db_session):
    ctx = workers[0]
    ctx.settings = ctx.settings.with_overrides(split_output_pixels=10**9)
    job = _job(ctx, db_session)
    assert pipeline.run_job(ctx, job.id) == "succeeded"
    assert reload(db_session, job).bands_total is None
    ctx.settings = ctx.settings.with_overrides(split_output_pixels=1)
    job = _job(ctx, db_session, scale=1.5, output_width=150, output_height=114)
    assert pipeline.run_job(ctx, job.id) == "succeeded"
    assert reload(db_session, job).bands_total is None
    job = _job(ctx, db_session, data=_photo("RGBA"))
    assert pipeline.run_job(ctx, job.id) == "succeeded"
    assert reload(db_session, job).bands_total is None
    # one tile row tall: one band whatever its size, which went through storage to share nothing
    strip = io.BytesIO()
    Image.fromarray(np.asarray(Image.open(io.BytesIO(_photo())))[:30]).save(strip, "PNG")
    ctx.settings = ctx.settings.with_overrides(band_output_pixels=5000)  # streamed: 200 x 60 out, one tile row
    job = _job(ctx, db_session, data=strip.getvalue(), input_height=30)
    assert pipeline.run_job(ctx, job.id) == "succeeded"
    job = reload(db_session, job)
    assert job.bands_total is None and job.ran["bands"] == 1  # streamed, on this worker alone


def test_a_split_job_on_s3_storage(split_settings, s3_settings, db_session):
    """Bands uploaded to and streamed back from a real S3 server, equal to the single-worker result."""
    s3 = {k: getattr(s3_settings, k) for k in ("storage", "s3_endpoint_url", "s3_bucket", "s3_access_key_id",
                                                "s3_secret_access_key", "s3_multipart_threshold_mb")}
    ctx = WorkerContext.create(split_settings.with_overrides(**s3))
    try:
        rng = np.random.default_rng(1)
        big = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (HEIGHT * 4, WIDTH * 4, 3), dtype=np.uint8)).save(big, "PNG")
        size = dict(scale=4, input_width=WIDTH * 4, input_height=HEIGHT * 4)
        job = _job(ctx, db_session, data=big.getvalue(), **size)
        ctx.settings = ctx.settings.with_overrides(band_output_pixels=600_000)
        assert pipeline.run_job(ctx, job.id) == "succeeded"
        job = reload(db_session, job)
        assert job.bands_total >= 3 and (job.output_width, job.output_height) == (WIDTH * 16, HEIGHT * 16)
        assert np.array_equal(_pixels(ctx, job), _unsplit(ctx, db_session, data=big.getvalue(), **size))
        assert not [k for k in ctx.storage.client.list_objects_v2(Bucket=ctx.storage.bucket).get("Contents", [])
                    if k["Key"].startswith("bands/")]
    finally:
        ctx.engine.dispose()


def test_a_sixteen_bit_split_job_equals_the_single_worker_result(workers, db_session, tmp_path):
    import pyvips

    ctx = workers[0]
    rng = np.random.default_rng(4)
    pixels = rng.integers(0, 65535, (HEIGHT, WIDTH, 3), dtype=np.uint16)
    data = pyvips.Image.new_from_array(pixels).copy(interpretation="rgb16").pngsave_buffer()
    job = _job(ctx, db_session, data=data)
    assert pipeline.run_job(ctx, job.id) == "succeeded"
    job = reload(db_session, job)
    assert job.bands_total >= 2 and job.ran["bits"] == 16
    split_out = pyvips.Image.new_from_buffer(ctx.storage.get_bytes(job.output_key), "")
    single = WorkerContext.create(ctx.settings.with_overrides(split_output_pixels=0))
    try:
        whole = _job(single, db_session, data=data)
        assert pipeline.run_job(single, whole.id) == "succeeded"
        whole_out = pyvips.Image.new_from_buffer(single.storage.get_bytes(reload(db_session, whole).output_key), "")
    finally:
        single.engine.dispose()
    assert split_out.format == whole_out.format == "ushort"
    assert np.array_equal(split_out.numpy(), whole_out.numpy())


def test_a_band_read_before_its_job_was_planned_again_is_left_not_joined(workers, split_settings, db_session,
                                                                         monkeypatch):
    """A band worker read the job, then the job was taken back by a worker on a new build of the network (a
    rolling update) and planned again, then the band worker's claim went through: it computed the old build's
    rows under the new plan, joined unseen (35 levels off). Now the claim is undone and the band left."""
    from worker.imaging import decode

    first, second, _ = workers
    updated = WorkerContext.create(split_settings)
    try:
        new_build = updated.engines.get("residual_sr")
        new_build.build += " new-weights"
        for weight in new_build.network.weights:
            weight.assign(weight * 1.05)
        job = _planned_only(first, db_session, monkeypatch)
        real_claim, real_gather = job_bands.claim, split.gather

        def planned_again_first(session, job_id, index, owner, lease_seconds):
            if owner == second.owner:
                db_session.query(type(job)).filter_by(id=job.id).update({"lease_expires_at": seconds_ago(1)})
                db_session.commit()
                monkeypatch.setattr(split, "gather", lambda *_args: "split")
                assert pipeline.run_job(updated, job.id) == "split"  # started over on the new build
                monkeypatch.setattr(split, "gather", real_gather)
            return real_claim(session, job_id, index, owner, lease_seconds)

        monkeypatch.setattr(job_bands, "claim", planned_again_first)
        assert split.run_band(second, job.id, 1) == "skipped"
        monkeypatch.setattr(job_bands, "claim", real_claim)
        assert db_session.get(JobBand, (job.id, 1)).status == "pending"
        assert split.gather(updated, job.id) == "succeeded"
        job = reload(db_session, job)
        source = split_settings.storage_dir / "check-input.png"
        source.write_bytes(updated.storage.get_bytes(job.input_key))
        assert np.array_equal(_pixels(updated, job), np.asarray(new_build.upscale(decode(source).rgb, 2)))
    finally:
        updated.engine.dispose()


def test_an_error_of_a_band_worker_that_lost_its_band_does_not_fail_the_job(workers, db_session, monkeypatch):
    """A worker frozen past its band's lease, whose band another worker took meanwhile, then raised: its late
    error failed the healthy job. It is left to the band's new holder."""
    first, second, third = workers
    job = _planned_only(first, db_session, monkeypatch)
    real = split.band_pixels

    def frozen_then_failed(*args, **kwargs):
        monkeypatch.setattr(split, "band_pixels", real)
        db_session.query(JobBand).filter_by(job_id=job.id, index=1).update({"lease_expires_at": seconds_ago(1)})
        db_session.commit()
        with unit_of_work(third.sessions) as session:
            assert job_bands.claim(session, job.id, 1, third.owner, 120)
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(split, "band_pixels", frozen_then_failed)
    assert split.run_band(second, job.id, 1) == "skipped"
    assert reload(db_session, job).status == "running"
    assert db_session.get(JobBand, (job.id, 1)).lease_owner == third.owner
    db_session.query(JobBand).filter_by(job_id=job.id, index=1).update({"lease_expires_at": seconds_ago(1)})
    db_session.commit()  # third vanished too: the gathering worker does band 1
    assert split.gather(first, job.id) == "succeeded"
    assert np.array_equal(_pixels(first, reload(db_session, job)), _unsplit(first, db_session))


def test_a_cancel_stops_the_gathering_before_it_downloads_and_encodes_stored_bands(workers, db_session,
                                                                                    monkeypatch):
    first, second, _ = workers
    job = _planned_only(first, db_session, monkeypatch)
    for index in range(job.bands_total):
        assert split.run_band(second, job.id, index) == "band_done"
    assert change_job(first, job.id, JobStatus.CANCELED, lambda session: jobs.cancel(session, job.id)) is not None
    work = []
    monkeypatch.setattr(split, "encode_rows", lambda *_args: work.append("encode"))
    monkeypatch.setattr(first.storage, "download_to", lambda *_args: work.append("download"))
    assert split.gather(first, job.id) == "lease_lost"
    assert work == []


def test_a_band_given_up_for_an_outage_is_handed_back_at_once(workers, db_session, monkeypatch):
    """It stayed locked under its worker's lease, which no one renewed: the gathering worker waited it out."""
    from shared.storage import StorageError

    first, second, _ = workers
    job = _planned_only(first, db_session, monkeypatch)

    def unreachable(*_args, **_kwargs):
        raise StorageError("S3 unreachable")

    monkeypatch.setattr(second.storage, "put_file", unreachable)
    assert split.run_band(second, job.id, 0) == "skipped"
    band = db_session.get(JobBand, (job.id, 0))
    assert (band.status, band.lease_owner) == ("pending", None)
    waits = []
    monkeypatch.setattr(split.time, "sleep", waits.append)
    assert split.gather(first, job.id) == "succeeded"
    assert waits == []


def test_a_gathering_worker_that_lost_its_job_reopens_no_band(workers, db_session, monkeypatch):
    """One that had lost the job lowered a finished job's progress and made stored bands pending again."""
    first, second, _ = workers
    job = _planned_only(first, db_session, monkeypatch)
    assert split.gather(first, job.id) == "succeeded"
    with unit_of_work(second.sessions) as session:
        assert not job_bands.reopen_lost(session, job.id, second.owner, 0)
        assert not job_bands.reopen_unstored(session, job.id, first.owner)  # ended: no one's any more
    job = reload(db_session, job)
    assert (job.status, job.progress, job.bands_done) == ("succeeded", 1.0, job.bands_total)


def test_a_waiting_gathering_worker_renews_its_job_once_a_second_not_every_poll(workers, db_session, monkeypatch):
    first, second, _ = workers
    job = _planned_only(first, db_session, monkeypatch)
    with unit_of_work(second.sessions) as session:  # another worker holds every band but the first
        for index in range(1, job.bands_total):
            assert job_bands.claim(session, job.id, index, second.owner, 120)
    renewals, polls = [], []
    real_renew = jobs.renew
    monkeypatch.setattr(jobs, "renew", lambda *args, **kwargs: renewals.append(1) or real_renew(*args, **kwargs))

    def poll(_seconds):
        polls.append(1)
        if len(polls) == 50:  # that worker vanished: its bands are free
            db_session.query(JobBand).filter_by(job_id=job.id).update({"lease_expires_at": seconds_ago(1)})
            db_session.commit()

    monkeypatch.setattr(split.time, "sleep", poll)
    assert split.gather(first, job.id) == "succeeded"
    assert len(polls) >= 50 and len(renewals) <= 5  # the polls took no time: the renewal was never due


def test_a_band_running_while_its_job_is_queued_again_is_finished_and_kept(workers, db_session, monkeypatch):
    """The gathering worker handed the job back for a storage blip (queued) while another worker uploaded its band:
    the band's completion was refused (the job was not running), its upload deleted, and the band left locked under
    a lease no one renewed, which the resumed job waited out (two minutes) before computing it again."""
    from shared.storage import StorageError
    from worker.outcomes import stop_for_outage

    first, second, _ = workers
    job = _planned_only(first, db_session, monkeypatch)
    upload = second.storage.put_file

    def the_gatherer_stops_meanwhile(key, path, content_type):
        upload(key, path, content_type)
        assert stop_for_outage(first, job.id, StorageError("S3 unreachable")) == "retrying"

    monkeypatch.setattr(second.storage, "put_file", the_gatherer_stops_meanwhile)
    assert split.run_band(second, job.id, 1) == "band_done"
    band = db_session.get(JobBand, (job.id, 1))
    assert reload(db_session, job).status == "queued"
    assert band.status == job_bands.DONE and second.storage.exists(band.result_key)


def test_a_gathering_worker_that_lost_its_job_leaves_no_band_locked(workers, db_session, monkeypatch):
    """A gathering worker frozen past its lease, thawed after the job was taken back, claimed its next band (a
    claim needs only a running job), computed it, was refused at completion and left the band running under its
    own lease: the job's new worker waited for it."""
    first, _, third = workers
    job = _planned_only(first, db_session, monkeypatch)
    db_session.query(type(job)).filter_by(id=job.id).update({"lease_expires_at": seconds_ago(1)})
    db_session.commit()
    assert sweep(first, first.celery).requeued == 1
    with unit_of_work(third.sessions) as session:  # taken back by third (which has yet to gather)
        assert jobs.claim(session, job.id, third.owner, 120, max_attempts=3)
    assert split.gather(first, job.id) == "lease_lost"  # first thaws and goes on
    band = db_session.get(JobBand, (job.id, 0))
    assert (band.status, band.lease_owner) == (job_bands.PENDING, None)


def test_a_band_that_kills_every_worker_fails_the_job_after_max_attempts(workers, db_session, monkeypatch):
    """Band attempts were counted but bounded nothing: while the gathering worker lived (renewing the job), a band
    whose worker was killed (out of memory) was published again after every lease, killing a worker each time."""
    first, second, _ = workers
    job = _planned_only(first, db_session, monkeypatch)
    last = job.bands_total - 1
    keys = []
    for attempt in range(1, first.settings.max_attempts + 1):
        with unit_of_work(second.sessions) as session:  # claimed, staged, and its worker killed
            assert job_bands.claim(session, job.id, last, second.owner, 120)
            keys.append(f"bands/dead/attempt{attempt}.raw")
            assert job_bands.stage(session, job.id, last, second.owner, keys[-1])
        second.storage.put_bytes(keys[-1], b"part of a band", "application/octet-stream")
        db_session.query(JobBand).filter_by(job_id=job.id, index=last).update({"lease_expires_at": seconds_ago(1)})
        db_session.query(type(job)).filter_by(id=job.id).update({"lease_expires_at": seconds_ago(-120)})  # alive
        db_session.commit()
        sweep(first, first.celery)
        assert reload(db_session, job).status == ("failed" if attempt == first.settings.max_attempts else "running")
    job = reload(db_session, job)
    assert (job.error_code, db_session.get(JobBand, (job.id, last)).attempts) == ("worker_lost", 3)
    assert not second.storage.exists(keys[-1])  # the last attempt's object went with the ended job's bands
    assert split.run_band(second, job.id, last) == "skipped"


def test_a_band_done_and_reopened_is_not_counted_as_a_lost_worker(workers, db_session, monkeypatch):
    """A band gathered into a vanished gatherer's own row file is reopened with the claims it took: its completed
    run counted as one of the max_attempts losses, and two band workers lost then failed the job worker_lost."""
    first, second, third = workers
    job = _planned_only(first, db_session, monkeypatch)
    with unit_of_work(first.sessions) as session:  # first gathers band 0 into its own row file, then vanishes
        assert job_bands.claim(session, job.id, 0, first.owner, 120)
        assert job_bands.complete(session, job.id, 0, first.owner, gathering=True)
    db_session.query(type(job)).filter_by(id=job.id).update({"lease_expires_at": seconds_ago(1)})
    db_session.commit()
    assert sweep(first, first.celery).requeued == 1
    with unit_of_work(third.sessions) as session:  # taken back by third, which resumes: band 0 is to do again
        assert jobs.claim(session, job.id, third.owner, 120, max_attempts=3)
        assert job_bands.reopen_unstored(session, job.id, third.owner)
    for _ in range(first.settings.max_attempts - 1):  # one fewer band worker lost than max_attempts
        with unit_of_work(second.sessions) as session:
            assert job_bands.claim(session, job.id, 0, second.owner, 120)
        db_session.query(JobBand).filter_by(job_id=job.id, index=0).update({"lease_expires_at": seconds_ago(1)})
        db_session.query(type(job)).filter_by(id=job.id).update({"lease_expires_at": seconds_ago(-120)})  # alive
        db_session.commit()
        sweep(first, first.celery)
    assert reload(db_session, job).status == "running"
