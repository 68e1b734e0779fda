"""The job pipeline in-process, on both databases and real local storage."""

import io
import json
import logging
import shutil
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
import redis
from celery.exceptions import SoftTimeLimitExceeded
from PIL import Image

from shared.models import Job
from shared.queue import make_celery, queue_depth, queue_lists
from shared.storage import make_storage
from tests.conftest import image_bytes
from tests.factories import make_job, outage_wait_over, queued_job, reload, seconds_ago
from worker import pipeline
from worker.engine.precision import choose_precision
from worker.engine.registry import EngineRegistry
from worker.sweeper import release_expired_leases, sweep


@pytest.mark.parametrize("model,fmt", [("bicubic", "png"), ("residual_sr", "webp"), ("residual_sr", "jpeg"),
                                       ("residual_sr", "avif")])
def test_a_job_runs_to_success(ctx, db_session, model, fmt):
    job = queued_job(ctx, db_session, model=model, scale=3, output_format=fmt)
    assert pipeline.run_job(ctx, job.id) == "succeeded"
    job = reload(db_session, job)
    assert (job.status, job.progress, job.attempts, job.lease_owner) == ("succeeded", 1.0, 1, None)
    assert (job.output_width, job.output_height) == (120, 90)
    with Image.open(io.BytesIO(ctx.storage.get_bytes(job.output_key))) as out:
        assert out.size == (120, 90) and out.format == fmt.upper()
    assert job.output_bytes == len(ctx.storage.get_bytes(job.output_key))
    assert 0 <= job.timings["inference_s"] <= job.timings["total_s"]
    assert job.ran["precision"] == (None if model == "bicubic" else choose_precision(ctx.settings.inference_precision))


@pytest.mark.parametrize("fmt,denoise,network,strength", [
    ("PNG", None, "residual_sr", None), ("JPEG", None, "residual_sr_cond", "measured"),
    ("JPEG", 0.0, "residual_sr", None), ("PNG", 0.6, "residual_sr_cond", 0.6)])
def test_auto_runs_the_network_that_fits_the_input_and_says_so(ctx, db_session, fmt, denoise, network, strength):
    yy, xx = np.mgrid[0:30, 0:40]
    smooth = np.stack([xx * 6, yy * 8, (xx + yy) * 3], -1).astype(np.uint8)  # clean: no noise to measure
    buffer = io.BytesIO()
    Image.fromarray(smooth).save(buffer, fmt, quality=70)
    job = queued_job(ctx, db_session, data=buffer.getvalue(), model="auto", denoise=denoise)
    assert pipeline.run_job(ctx, job.id) == "succeeded"
    ran = reload(db_session, job).ran
    assert ran["model"] == network and ran["input"]["format"] == fmt and ran["reason"]
    if strength == "measured":
        assert ran["input"]["jpeg_quality"] is not None and 0 < ran["strength"] < 1
    else:
        assert ran["strength"] == strength


def test_a_second_delivery_does_no_work(ctx, db_session):
    job = queued_job(ctx, db_session)
    assert pipeline.run_job(ctx, job.id) == "succeeded"
    first_key = reload(db_session, job).output_key
    assert pipeline.run_job(ctx, job.id) == "skipped"
    job = reload(db_session, job)
    assert (job.output_key, job.attempts) == (first_key, 1)
    assert len(list((ctx.settings.storage_dir / "results").rglob("*.png"))) == 1


def test_an_orphan_left_by_a_dead_attempt_is_removed(ctx, db_session):
    ctx.storage.put_bytes("results/dead/attempt.png", b"half an upload", "image/png")
    job = queued_job(ctx, db_session, staged_output_key="results/dead/attempt.png")
    assert pipeline.run_job(ctx, job.id) == "succeeded"
    assert not ctx.storage.exists("results/dead/attempt.png")
    job = reload(db_session, job)
    assert job.staged_output_key is None and ctx.storage.exists(job.output_key)


def test_an_orphan_that_cannot_be_deleted_now_stays_named(ctx, db_session, monkeypatch):
    """Its delete failed and the key was forgotten all the same: the object stayed stored for good. The attempt
    hands the job back instead, the key still on it, for the next attempt (or retention) to delete."""
    from shared.storage import StorageError

    ctx.storage.put_bytes("results/dead/kept.png", b"half an upload", "image/png")
    job = queued_job(ctx, db_session, staged_output_key="results/dead/kept.png")

    def refused(key):
        raise StorageError(f"cannot delete {key}: connection reset")

    monkeypatch.setattr(ctx.storage, "delete", refused)
    assert pipeline.run_job(ctx, job.id) == "retrying"
    back = reload(db_session, job)
    assert (back.status, back.staged_output_key) == ("queued", "results/dead/kept.png")


def test_unreadable_input_fails_with_a_stable_code_and_keeps_the_input(ctx, db_session):
    job = queued_job(ctx, db_session, data=image_bytes()[:70])
    assert pipeline.run_job(ctx, job.id) == "failed"
    job = reload(db_session, job)
    assert (job.status, job.error_code) == ("failed", "input_unreadable")
    assert ctx.storage.exists(job.input_key)


def test_missing_input_fails_as_input_missing(ctx, db_session):
    job = make_job(db_session, input_key="inputs/none/gone.png")
    pipeline.run_job(ctx, job.id)
    assert reload(db_session, job).error_code == "input_missing"


def test_unknown_model_on_the_worker_fails_as_engine_failed(ctx, db_session):
    job = queued_job(ctx, db_session, model="retired-model")
    pipeline.run_job(ctx, job.id)
    assert reload(db_session, job).error_code == "engine_failed"


def _damaged(folder, damage: str) -> None:
    """Damage ``residual_sr`` in a copy of the shipped models folder the way an operator's copy can be."""
    record = folder / "residual_sr.json"
    if damage == "lfs_pointer":  # a checkout without Git LFS: a text pointer where the weights should be
        (folder / "residual_sr.weights.h5").write_text("version https://git-lfs.github.com/spec/v1\n"
                                                      "oid sha256:0123\nsize 1370768\n")
    elif damage == "truncated":
        weights = folder / "residual_sr.weights.h5"
        weights.write_bytes(weights.read_bytes()[:100_000])
    else:
        data = json.loads(record.read_text())
        if damage == "unknown_arch":
            data["arch"] = "swinir"
        else:  # a record whose scales the weights do not have
            data["network"]["scales"] = [2, 4]
        record.write_text(json.dumps(data))


@pytest.mark.parametrize("damage", ["lfs_pointer", "truncated", "unknown_arch", "scales_not_in_weights"])
def test_a_model_the_worker_cannot_load_fails_as_engine_failed(ctx, db_session, tmp_path, caplog, damage):
    """Weights that are not weights (a Git LFS pointer, a truncated copy), a record naming an architecture no
    builder has or a shape its weights do not fit: the job failed ``internal_error``, "an unexpected error in the
    worker", where docs/errors.md says ``engine_failed``; the log says what is wrong with which file. Not cached:
    the next job loads the files once put right."""
    folder = tmp_path / "models"
    shutil.copytree(ctx.settings.models_dir, folder)
    _damaged(folder, damage)
    ctx.engines = EngineRegistry(ctx.settings.with_overrides(models_dir=folder))
    job = queued_job(ctx, db_session, model="residual_sr")
    with caplog.at_level(logging.WARNING, logger="worker.outcomes"):
        assert pipeline.run_job(ctx, job.id) == "failed"
    job = reload(db_session, job)
    assert (job.error_code, job.error_message) == (
        "engine_failed", "this worker could not load model 'residual_sr'; the operator's log has why under this "
                         "job's id")
    assert f"model 'residual_sr' could not be loaded from {folder / 'residual_sr.weights.h5'}" in caplog.text
    for name in ("residual_sr.json", "residual_sr.weights.h5"):
        shutil.copy(ctx.settings.models_dir / name, folder / name)
    assert pipeline.run_job(ctx, queued_job(ctx, db_session, model="residual_sr").id) == "succeeded"


@pytest.mark.parametrize("error,code", [(SoftTimeLimitExceeded(), "time_limit"),
                                        (RuntimeError("bug"), "internal_error")])
def test_failures_map_to_stable_codes(ctx, db_session, monkeypatch, error, code):
    job = queued_job(ctx, db_session)

    def fail(*_args, **_kwargs):
        raise error

    monkeypatch.setattr(ctx.storage, "put_file", fail)
    assert pipeline.run_job(ctx, job.id) == "failed"
    job = reload(db_session, job)
    assert (job.status, job.error_code) == ("failed", code)
    assert "bug" not in job.error_message and "RuntimeError" not in job.error_message  # the traceback is logged
    assert ctx.storage.exists(job.input_key)


def _run_under_billiards_soft_limit(ctx, job_id: str) -> str:
    """``run_job`` with billiard's soft-limit handler installed, as in a prefork pool process; checks the handler
    is back afterwards."""
    import signal

    from billiard.pool import soft_timeout_sighandler

    previous = signal.signal(signal.SIGUSR1, soft_timeout_sighandler)
    try:
        outcome = pipeline.run_job(ctx, job_id)
        assert signal.getsignal(signal.SIGUSR1) is soft_timeout_sighandler
    finally:
        signal.signal(signal.SIGUSR1, previous)
    return outcome


def test_a_time_limit_landing_inside_the_claim_fails_the_job_as_time_limit(ctx, db_session, monkeypatch):
    """Celery's soft limit is billiard's SIGUSR1 handler raising wherever the task is: landing inside the claim
    (a fresh pool process on a loaded machine), it ended the task with the job claimed and nobody to end it, so
    the job stayed running, 0 %, until its lease ran out. Held during the claim, it fails the job as it should,
    and billiard's handler is back afterwards."""
    import signal

    from shared import jobs

    claim = jobs.claim

    def claim_interrupted(session, *args, **kwargs):
        taken = claim(session, *args, **kwargs)
        signal.raise_signal(signal.SIGUSR1)  # the limit passes while the claim's transaction is open
        return taken

    monkeypatch.setattr(jobs, "claim", claim_interrupted)
    job = queued_job(ctx, db_session)
    assert _run_under_billiards_soft_limit(ctx, job.id) == "failed"
    job = reload(db_session, job)
    assert (job.status, job.error_code, job.attempts, job.lease_owner) == ("failed", "time_limit", 1, None)
    assert ctx.storage.exists(job.input_key)


def test_a_time_limit_landing_after_the_success_commit_keeps_the_result(ctx, db_session, monkeypatch):
    """The success commit is followed by publishing its event to Redis (retried for seconds while Redis is
    away): a soft limit landing there went to the attempt's error handling, which deleted the result of a job
    already recorded as succeeded. Waived there, the job stays succeeded with its result, and billiard's handler
    is back afterwards."""
    import signal

    from shared.states import JobStatus
    from worker import outcomes

    change_job = outcomes.change_job

    def change_interrupted(platform, job_id, status, *args, **kwargs):
        job = change_job(platform, job_id, status, *args, **kwargs)
        if status is JobStatus.SUCCEEDED:
            signal.raise_signal(signal.SIGUSR1)  # the limit passes after the commit and the event's publishing
        return job

    monkeypatch.setattr(outcomes, "change_job", change_interrupted)
    job = queued_job(ctx, db_session)
    assert _run_under_billiards_soft_limit(ctx, job.id) == "succeeded"
    job = reload(db_session, job)
    assert job.status == "succeeded" and ctx.storage.exists(job.output_key)


def test_no_time_limit_held_lets_a_claim_run_as_before(ctx, db_session):
    """Without billiard's handler (a solo pool, the tests' own process) holding changes nothing."""
    import signal

    before = signal.getsignal(signal.SIGUSR1)
    job = queued_job(ctx, db_session)
    assert pipeline.run_job(ctx, job.id) == "succeeded"
    assert signal.getsignal(signal.SIGUSR1) == before


def _unreachable_storage(ctx, **overrides):
    """``ctx`` whose object storage refuses connections (an S3 endpoint on a port nothing listens on)."""
    from cli.processes import free_port

    return replace(ctx, settings=ctx.settings.with_overrides(**overrides), storage=make_storage(
        ctx.settings.with_overrides(storage="s3", s3_endpoint_url=f"http://127.0.0.1:{free_port()}",
                                    s3_bucket="unreachable", s3_access_key_id="k", s3_secret_access_key="s")))


def test_an_unreachable_bucket_hands_the_job_back_until_the_grace_runs_out(ctx, db_session):
    """Object storage away (its endpoint refuses connections): one failed request failed every job a worker
    took; later each hand-back used one of max_attempts and the next came at the sweeper's next pass, so a 30-60 s
    outage still failed every queued job. Now the attempt is not counted, the job waits before it may run again
    (neither a message nor the sweeper takes it early), and it fails storage_failed only once outages have kept it
    from finishing for the grace period, its input kept."""
    from shared import jobs

    job = queued_job(ctx, db_session)  # its input stored in the working (local) storage
    away = _unreachable_storage(ctx, max_attempts=2, storage_outage_grace=60)
    for _ in range(3):  # more outages than max_attempts: none is counted
        assert pipeline.run_job(away, job.id) == "retrying"
        back = reload(db_session, job)
        assert (back.status, back.attempts, back.enqueued_at, back.lease_owner) == ("queued", 0, None, None)
        assert back.outage_since is not None and 4 <= (back.retry_at - back.outage_since).total_seconds() <= 60
        assert pipeline.run_job(away, job.id) == "skipped"  # its wait is not over: not claimed
        assert job.id not in jobs.jobs_to_enqueue(db_session, ctx.settings.queued_stale_seconds)
        assert jobs.count_queued(db_session) == 0
        outage_wait_over(db_session, job.id)
    assert job.id in jobs.jobs_to_enqueue(db_session, ctx.settings.queued_stale_seconds)
    # the wait grows with the outage: 30 s into it, the next try comes 30 s later
    db_session.query(Job).filter_by(id=job.id).update({"outage_since": seconds_ago(30)})
    db_session.commit()
    assert pipeline.run_job(away, job.id) == "retrying"
    back = reload(db_session, job)
    assert 25 <= (back.retry_at - seconds_ago(0)).total_seconds() <= 31
    outage_wait_over(db_session, job.id)
    db_session.query(Job).filter_by(id=job.id).update({"outage_since": seconds_ago(61)})
    db_session.commit()
    assert pipeline.run_job(away, job.id) == "failed"
    failed = reload(db_session, job)
    assert (failed.status, failed.error_code, failed.attempts) == ("failed", "storage_failed", 1)
    # said to the customer without the deployment's endpoint, bucket or keys (they are the operator's, in the log)
    assert failed.error_message == "object storage was unavailable on every attempt; try again later"
    assert ctx.storage.exists(job.input_key)


def test_a_job_an_outage_stopped_runs_once_storage_is_back_and_starts_once(ctx, db_session):
    """After the outage the job runs to success on its next turn; its job.started event is not sent again, and its
    started_at is the first attempt's (a retry is not a new start)."""
    from shared.models import WebhookDelivery

    job = queued_job(ctx, db_session, webhook_url="http://127.0.0.1:9/hook",
                     webhook_events=["job.started", "job.succeeded"])
    assert pipeline.run_job(_unreachable_storage(ctx), job.id) == "retrying"
    first_start = reload(db_session, job).started_at
    outage_wait_over(db_session, job.id)
    assert pipeline.run_job(ctx, job.id) == "succeeded"
    done = reload(db_session, job)
    assert (done.status, done.attempts, done.started_at, done.retry_at) == ("succeeded", 1, first_start, None)
    events = [d.event for d in db_session.query(WebhookDelivery).filter_by(job_id=job.id)]
    assert events.count("job.started") == 1 and "job.succeeded" in events


def test_a_database_error_mid_job_leaves_it_to_its_lease_not_failed(ctx, db_session, monkeypatch):
    """The database gone mid-job and still away when the attempt must record its result: an OperationalError
    failed the job internal_error. The attempt stops and the job stays running until its lease runs out, for the
    sweeper to queue it again."""
    from sqlalchemy.exc import OperationalError

    from shared import jobs

    job = queued_job(ctx, db_session)

    def failover(*_args, **_kwargs):
        raise OperationalError("UPDATE jobs", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(jobs, "renew", failover)
    monkeypatch.setattr(jobs, "stage_output", failover)
    assert pipeline.run_job(ctx, job.id) == "database_unavailable"
    stopped = reload(db_session, job)
    assert (stopped.status, stopped.error_code) == ("running", None)
    assert not [path for path in (ctx.settings.storage_dir / "results").rglob("*") if path.is_file()]


def test_a_database_away_for_some_renewals_then_back_does_not_end_the_attempt(settings, db_session, monkeypatch):
    """A failover of a few seconds mid-inference, well within the lease: the first renewal's OperationalError
    ended the attempt, the job stayed running under a lease nobody renewed (120 s by default), then ran again from
    the start, an attempt spent. The renewals that fail are no answer; the job finishes on its first attempt."""
    from sqlalchemy.exc import OperationalError

    from shared import jobs
    from worker.context import WorkerContext

    ctx = WorkerContext.create(settings.with_overrides(tile_size=48))  # 12 tiles
    monkeypatch.setattr(pipeline, "PROGRESS_EVERY_SECONDS", 0.0)  # a renewal at every tile
    job = queued_job(ctx, db_session, data=image_bytes(width=120, height=90), model="residual_sr", scale=2)
    real_renew, calls = jobs.renew, []

    def away_for_a_while(*args, **kwargs):
        calls.append(args)
        if 2 <= len(calls) <= 4:
            raise OperationalError("UPDATE jobs", {}, Exception("server closed the connection unexpectedly"))
        return real_renew(*args, **kwargs)

    monkeypatch.setattr(jobs, "renew", away_for_a_while)
    assert pipeline.run_job(ctx, job.id) == "succeeded"
    done = reload(db_session, job)
    assert len(calls) > 4, "the renewals never came back; the test proves nothing"
    assert (done.status, done.attempts, done.progress) == ("succeeded", 1, 1.0)
    assert ctx.storage.exists(done.output_key)
    ctx.engine.dispose()


def test_a_turn_whose_claim_meets_a_failover_claims_once_the_database_is_back(ctx, db_session, monkeypatch):
    """The claim's OperationalError ended the task and its message was acknowledged: the job stayed queued with no
    message until the sweeper's look for stale jobs (10 minutes). The claim is tried again for about a minute; a
    fault that is not an outage is raised at once, as before."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    from shared import jobs

    job = queued_job(ctx, db_session)
    real_pick, picks, waits = jobs.next_fair_job, [], []

    def away_twice(*args, **kwargs):
        picks.append(args)
        if len(picks) <= 2:
            raise OperationalError("SELECT jobs", {}, Exception("could not connect to server"))
        return real_pick(*args, **kwargs)

    monkeypatch.setattr(pipeline.time, "sleep", waits.append)
    monkeypatch.setattr(jobs, "next_fair_job", away_twice)
    assert pipeline.run_job(ctx, job.id) == "succeeded"
    assert waits == list(pipeline.CLAIM_RETRY_WAITS[:2]) and reload(db_session, job).attempts == 1

    def broken(*_args, **_kwargs):
        raise IntegrityError("SELECT jobs", {}, Exception("a fault every try meets"))

    monkeypatch.setattr(jobs, "next_fair_job", broken)
    with pytest.raises(IntegrityError):
        pipeline.run_job(ctx, queued_job(ctx, db_session).id)
    assert len(waits) == 2  # not tried again


def test_a_success_whose_commit_landed_but_whose_answer_was_lost_keeps_its_result(ctx, db_session, monkeypatch):
    """The commit reached the database, the connection dropped before its answer (a failover): the attempt took
    it for an outage and deleted the result of a job recorded as succeeded, whose webhook went out with a link to
    nothing."""
    from sqlalchemy.exc import OperationalError

    from worker import outcomes

    job = queued_job(ctx, db_session)

    finish = outcomes.finish_job

    def committed_then_dropped(*args, **kwargs):
        assert finish(*args, **kwargs)
        raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(outcomes, "finish_job", committed_then_dropped)  # as succeed_job calls it
    assert pipeline.run_job(ctx, job.id) == "database_unavailable"
    done = reload(db_session, job)
    assert done.status == "succeeded" and ctx.storage.exists(done.output_key)


def test_losing_the_lease_discards_the_output(ctx, db_session, monkeypatch):
    job = queued_job(ctx, db_session)
    real_put = ctx.storage.put_file

    def put_then_lose_lease(key, path, content_type):
        real_put(key, path, content_type)
        db_session.query(Job).filter_by(id=job.id).update({"lease_owner": "someone-else"})
        db_session.commit()

    monkeypatch.setattr(ctx.storage, "put_file", put_then_lose_lease)
    assert pipeline.run_job(ctx, job.id) == "lease_lost"
    assert list((ctx.settings.storage_dir / "results").rglob("*.png")) == []
    assert reload(db_session, job).status == "running"  # the new owner finishes it


def test_a_step_that_reports_nothing_keeps_the_job_past_its_lease(ctx, db_session, monkeypatch):
    """An upload to a slow bucket outlasting the lease: the sweeper took the job back while it uploaded, the
    attempt was thrown away, and a job that always uploads that long ended worker_lost. The worker keeps its
    lease from a thread while it works, so the sweeper's look at that moment finds nothing expired."""
    ctx = replace(ctx, settings=replace(ctx.settings, lease_seconds=1))
    job = queued_job(ctx, db_session)
    real_put = ctx.storage.put_file
    swept = []

    def slow_put(key, path, content_type):
        time.sleep(2.5)  # 2.5 leases without a word from the upload
        swept.append(release_expired_leases(ctx))
        real_put(key, path, content_type)

    monkeypatch.setattr(ctx.storage, "put_file", slow_put)
    assert pipeline.run_job(ctx, job.id) == "succeeded"
    assert swept == [([], [])]
    assert reload(db_session, job).status == "succeeded"
    time.sleep(1)  # the keeping thread ended with the job: nothing renews a finished job
    assert not any(thread.name == f"lease-{job.id}" for thread in threading.enumerate())


def test_sweeper_enqueues_orphans_and_requeues_dead_workers(ctx, db_session):
    celery = make_celery(ctx.settings)
    queue = redis.Redis.from_url(ctx.settings.redis_url)
    queue.delete(*queue_lists("inference"))  # every priority level: earlier tests may have left messages in any
    never = queued_job(ctx, db_session, enqueued_at=None)
    dead = queued_job(ctx, db_session, status="running", lease_owner="gone", lease_expires_at=seconds_ago(3),
                      attempts=1)
    report = sweep(ctx, celery)
    assert (report.enqueued, report.requeued, report.failed) == (2, 1, 0)
    assert queue_depth(queue, "inference") == 2
    assert reload(db_session, never).enqueued_at is not None
    assert reload(db_session, dead).status == "queued"
    assert sweep(ctx, celery).enqueued == 0  # nothing enqueued twice


def test_one_sweep_at_a_time_and_a_sweep_not_taken_in_its_interval_is_dropped(ctx, db_session):
    """Four sweeps that piled up while the maintenance worker was down ran at once on its return, each counted the
    missing messages before the others published, and together published every stale job's message twice."""
    from worker.sweeper import SWEEP_LOCK

    celery = make_celery(ctx.settings)
    assert celery.conf.beat_schedule["sweep"]["options"]["expires"] == ctx.settings.sweep_interval
    queue = redis.Redis.from_url(ctx.settings.redis_url)
    queue.delete(*queue_lists("inference"))
    never = queued_job(ctx, db_session, enqueued_at=None)
    other = queue.lock(SWEEP_LOCK, timeout=60, blocking=False)
    assert other.acquire()  # another sweep is running
    try:
        assert sweep(ctx, celery).skipped and queue_depth(queue, "inference") == 0
    finally:
        other.release()
    report = sweep(ctx, celery)
    assert (report.skipped, report.enqueued, queue_depth(queue, "inference")) == (False, 1, 1)
    assert reload(db_session, never).enqueued_at is not None and not queue.exists(SWEEP_LOCK)  # released after


def test_the_sweeper_publishes_again_only_a_stale_job_whose_message_is_gone(ctx, db_session):
    """A job waiting longer than queued_stale_seconds behind a backlog still has its message: publishing another
    one every period doubled the lists the autoscaler reads. Only a job whose message is gone (Redis lost it)
    gets a new one; the other's clock starts again."""
    from shared.queue import enqueue_job

    celery = make_celery(ctx.settings)
    queue = redis.Redis.from_url(ctx.settings.redis_url)
    queue.delete(*queue_lists("inference"))
    waiting = queued_job(ctx, db_session, enqueued_at=seconds_ago(3600))
    lost = queued_job(ctx, db_session, enqueued_at=seconds_ago(3600))
    enqueue_job(celery, waiting.id, priority=2)  # still in the broker, at some priority level
    assert sweep(ctx, celery).enqueued == 1
    assert queue_depth(queue, "inference") == 2  # one message each, none doubled
    assert reload(db_session, waiting).enqueued_at > seconds_ago(60)  # seen there: waits a period more
    assert reload(db_session, lost).enqueued_at > seconds_ago(60)
    assert sweep(ctx, celery).enqueued == 0


def test_a_message_held_by_a_worker_does_not_stop_the_sweeper_publishing_again(ctx, db_session):
    """A message handed to a worker sits in kombu's 'unacked' hash until acknowledged; if that worker died it
    comes back only after the visibility timeout, so it must not count as waiting."""
    import json

    from shared.queue import enqueue_job

    celery = make_celery(ctx.settings)
    queue = redis.Redis.from_url(ctx.settings.redis_url)
    queue.delete(*queue_lists("inference"), "unacked")
    held = queued_job(ctx, db_session, enqueued_at=seconds_ago(3600))
    enqueue_job(celery, held.id)
    raw = queue.rpop("inference")  # as a worker takes it: out of the list, into the hash
    queue.hset("unacked", "tag-1", json.dumps([json.loads(raw), "", "inference"]))
    try:
        assert sweep(ctx, celery).enqueued == 1 and queue_depth(queue, "inference") == 1
    finally:
        queue.delete("unacked")


def test_a_width_target_with_exif_and_dpi_comes_back_exact_with_its_metadata(ctx, db_session):
    """The print shop's case, small: a JPEG with a copyright and 300 dpi, asked for 500 px wide (x4.17: the
    network runs x4 then x2, then Lanczos to the exact width); the copyright stays, the print size too."""
    exif = Image.Exif()
    exif[0x8298] = "(c) Studio Nord"
    buffer = io.BytesIO()
    Image.open(io.BytesIO(image_bytes(width=120, height=80))).save(buffer, "JPEG", quality=90, exif=exif,
                                                                   dpi=(300, 300))
    job = queued_job(ctx, db_session, data=buffer.getvalue(), model="residual_sr", scale=None, target_width=500)
    assert pipeline.run_job(ctx, job.id) == "succeeded"
    job = reload(db_session, job)
    assert (job.output_width, job.output_height) == (500, 333)
    assert job.ran["network_scales"] == [4, 2] and job.ran["resampled"] is True
    with Image.open(io.BytesIO(ctx.storage.get_bytes(job.output_key))) as out:
        assert out.size == (500, 333)
        assert out.getexif()[0x8298] == "(c) Studio Nord"
        assert round(out.info["dpi"][0]) == round(300 * 500 / 120)  # same width in inches


@pytest.mark.parametrize("orientation", [6, 8])
def test_a_size_asked_of_a_rotated_photo_is_of_the_photo_as_shown(client, ctx, db_session, orientation):
    """A phone photo stored 40x30 and tagged to be shown turned (30x40): the API planned on the stored size, so
    the job said one size and the worker made another (or failed late past x8)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.open(io.BytesIO(image_bytes(width=40, height=30))).save(buffer, "JPEG", quality=90, exif=exif)
    response = client.post("/v1/jobs", content_type="multipart/form-data",
                           data={"image": (io.BytesIO(buffer.getvalue()), "phone.jpg"), "width": "60",
                                 "model": "bicubic"})
    body = response.get_json()
    assert response.status_code == 202, body
    assert (body["input"]["width"], body["input"]["height"]) == (30, 40)
    assert (body["output"]["width"], body["output"]["height"]) == (60, 80)
    assert pipeline.run_job(ctx, body["id"]) == "succeeded"
    job = reload(db_session, db_session.get(Job, body["id"]))
    assert (job.output_width, job.output_height) == (60, 80)


@pytest.mark.parametrize("message,code", [("broken data stream when writing image file", "internal_error"),
                                          ("image file is truncated (3 bytes not processed)", "input_unreadable"),
                                          ("cannot identify image file <_io.BytesIO>", "input_unreadable")])
def test_an_encoder_failure_is_not_blamed_on_the_input(message, code):
    """Pillow says "image file" when reading and when writing fails: only the reader's words are the input's."""
    from worker.outcomes import classify

    assert classify(OSError(message)).code == code


def test_a_message_runs_the_least_served_tenants_job_and_every_job_still_runs(ctx, db_session):
    """Two messages, two jobs: A's message (A served already) runs B's job, B's message then runs A's."""
    served = queued_job(ctx, db_session, tenant="acme", status="succeeded", started_at=seconds_ago(30),
                        created_at=seconds_ago(60))
    a_job = queued_job(ctx, db_session, tenant="acme", created_at=seconds_ago(50))
    b_job = queued_job(ctx, db_session, tenant="globex", created_at=seconds_ago(5))
    assert served.status == "succeeded"
    assert pipeline.run_job(ctx, a_job.id) == "succeeded"
    assert (reload(db_session, b_job).status, reload(db_session, a_job).status) == ("succeeded", "queued")
    assert pipeline.run_job(ctx, b_job.id) == "succeeded"  # B's own message: its job is done, the turn runs A's
    assert reload(db_session, a_job).status == "succeeded"
    assert pipeline.run_job(ctx, b_job.id) == "skipped"  # a third turn finds nothing queued


def test_a_turn_whose_chosen_job_another_worker_took_runs_the_next_one(ctx, db_session, monkeypatch):
    """Two workers may choose the same job; the loser chose once and fell back to its own (done) job: its turn was
    spent and a queued job waited ten minutes for the sweeper. It now chooses again until it claims one."""
    from shared import jobs

    first, second = queued_job(ctx, db_session), queued_job(ctx, db_session)
    done = queued_job(ctx, db_session, status="succeeded", started_at=seconds_ago(5))
    real_claim = jobs.claim

    def another_worker_first(session, job_id, owner, lease_seconds, max_attempts):
        if job_id == first.id:  # taken between our choice and our claim
            real_claim(session, job_id, "the-other-worker", lease_seconds, max_attempts=max_attempts)
            return False
        return real_claim(session, job_id, owner, lease_seconds, max_attempts=max_attempts)

    monkeypatch.setattr(jobs, "claim", another_worker_first)
    assert pipeline.run_job(ctx, done.id) == "succeeded"  # a spare turn: first was taken, second runs
    assert reload(db_session, second).status == "succeeded"
    assert reload(db_session, first).lease_owner == "the-other-worker"


def test_the_sweeper_counts_turns_not_a_jobs_own_message(ctx, db_session):
    """A's message ran B's job; B's message still waits and will run A's: no message is missing, though A's own
    is gone (matched by id, the sweeper doubled it every period and the autoscaler read it as work)."""
    from shared.queue import enqueue_job

    celery = make_celery(ctx.settings)
    queue = redis.Redis.from_url(ctx.settings.redis_url)
    queue.delete(*queue_lists("inference"), "unacked")
    a_job = queued_job(ctx, db_session, tenant="acme", enqueued_at=seconds_ago(3600))
    enqueue_job(celery, queued_job(ctx, db_session, tenant="globex", status="succeeded").id)  # B's, still there
    assert sweep(ctx, celery).enqueued == 0 and queue_depth(queue, "inference") == 1
    assert reload(db_session, a_job).enqueued_at > seconds_ago(60)  # its clock starts again
    queue.delete(*queue_lists("inference"))
    assert sweep(ctx, celery).enqueued == 0  # clock restarted: not stale yet
    db_session.query(Job).filter_by(id=a_job.id).update({"enqueued_at": seconds_ago(3600)})
    db_session.commit()
    assert sweep(ctx, celery).enqueued == 1 and queue_depth(queue, "inference") == 1  # now a turn is missing


def test_a_turn_reports_the_job_it_ran(ctx, db_session, monkeypatch):
    """Celery logs the task's result: it names the job that ran (another tenant's here), not the message's."""
    from worker import tasks

    queued_job(ctx, db_session, tenant="acme", status="succeeded", started_at=seconds_ago(30),
               created_at=seconds_ago(60))
    a_job = queued_job(ctx, db_session, tenant="acme", created_at=seconds_ago(50))
    b_job = queued_job(ctx, db_session, tenant="globex", created_at=seconds_ago(5))
    monkeypatch.setattr(tasks, "get_context", lambda: ctx)
    assert tasks.run_job.run(a_job.id) == {"job_id": b_job.id, "outcome": "succeeded"}


def test_a_job_that_makes_nothing_gives_its_quota_charge_back_once_to_its_day(client, ctx, db_session, monkeypatch):
    """A failed job kept its charge for the day (only a queued upload canceled before it ran gave it back): a
    customer whose jobs failed on the platform's side (a store away, a lost worker) ran out of quota for results
    never made. The charge is recorded on the job where it is made and given back once when the job fails or is
    canceled before it started; a job that succeeded, or was canceled while it ran, keeps it."""
    import uuid

    from shared.states import JobStatus
    from shared.tenants import create_key
    from shared.transitions import change_job

    name = f"refund-{uuid.uuid4().hex[:8]}"
    _, key = create_key(db_session, name, daily_megapixels=5)
    db_session.commit()
    counts = redis.Redis.from_url(ctx.settings.redis_url)

    def submit(width: int) -> str:  # x2 of width x 100: width * 200 * 2 output pixels
        answer = client.post("/v1/jobs", headers={"Authorization": f"Bearer {key}"},
                             content_type="multipart/form-data",
                             data={"image": (io.BytesIO(image_bytes(width=width, height=100)), "a.png"),
                                   "scale": "2", "model": "bicubic"})
        assert answer.status_code == 202, answer.get_json()
        return answer.get_json()["id"]

    def used() -> float:
        (day,) = counts.keys(f"upscaler:mp:{name}:*")
        return round(float(counts.get(day)), 4)

    kept, failed, canceled, running = submit(500), submit(600), submit(700), submit(800)
    assert used() == 1.04  # 0.2 + 0.24 + 0.28 + 0.32 MP
    assert pipeline.run_job(ctx, kept) == "succeeded"
    monkeypatch.setattr(ctx.storage, "put_file", lambda *_args: (_ for _ in ()).throw(RuntimeError("a bug")))
    assert pipeline.run_job(ctx, failed) == "failed"
    monkeypatch.undo()
    assert used() == 0.8  # the failed job's 0.24 back
    assert client.post(f"/v1/jobs/{canceled}/cancel", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert used() == 0.52
    with db_session.begin():  # claimed by a worker: canceled while it runs, it keeps its charge
        db_session.get(Job, running).status, db_session.get(Job, running).started_at = "running", seconds_ago(1)
    assert client.post(f"/v1/jobs/{running}/cancel", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert used() == 0.52
    # once only: a later terminal transition of the failed job (none exists; forced) finds nothing left to give
    assert change_job(ctx, failed, JobStatus.FAILED, lambda _session: True) is not None
    assert used() == 0.52
    assert [reload(db_session, db_session.get(Job, job)).charged_megapixels for job in (kept, failed, canceled)] \
        == [0.2, None, None]


def test_a_job_charged_nothing_gives_nothing_back(client, ctx, db_session, monkeypatch):
    """Redis away at submit: the upload runs uncharged (logged), so its failure must not take megapixels off
    the count of the day (a refund of a charge never made)."""
    import uuid

    import redis as redis_client

    from shared.tenants import create_key

    name = f"uncharged-{uuid.uuid4().hex[:8]}"
    _, key = create_key(db_session, name, daily_megapixels=5)
    db_session.commit()
    services = client.application.extensions["upscaler"]
    counts = redis.Redis.from_url(ctx.settings.redis_url)
    counts.set(f"upscaler:mp:{name}:{time.strftime('%Y%m%d', time.gmtime())}", 1.0)

    def away(*_args, **_kwargs):
        raise redis_client.ConnectionError("Redis is away")

    monkeypatch.setattr(services.redis, "eval", away)  # the quota's charge (one script)
    job_id = client.post("/v1/jobs", headers={"Authorization": f"Bearer {key}"}, content_type="multipart/form-data",
                         data={"image": (io.BytesIO(image_bytes(width=500, height=100)), "a.png"), "scale": "2",
                               "model": "bicubic"}).get_json()["id"]
    monkeypatch.undo()
    assert reload(db_session, db_session.get(Job, job_id)).charged_megapixels is None
    monkeypatch.setattr(ctx.storage, "put_file", lambda *_args: (_ for _ in ()).throw(RuntimeError("a bug")))
    assert pipeline.run_job(ctx, job_id) == "failed"
    assert float(counts.get(f"upscaler:mp:{name}:{time.strftime('%Y%m%d', time.gmtime())}")) == 1.0


def test_the_lease_keepers_lines_carry_the_jobs_id(ctx, caplog, monkeypatch):
    """Threads do not inherit the job's context: the renewal thread's warnings had no job_id, so a query for the
    job's lines missed them."""
    from shared import jobs as job_rows
    from shared.logs import JobIdFilter, job_context
    from worker.outcomes import lease_kept

    def blip(*args, **kwargs):
        raise RuntimeError("database blip")

    monkeypatch.setattr(job_rows, "renew", blip)
    fast = replace(ctx, settings=ctx.settings.with_overrides(lease_seconds=0.3))
    caplog.handler.addFilter(JobIdFilter())
    with job_context("job-for-the-lines"), lease_kept(fast, "job-for-the-lines"):
        time.sleep(0.5)
    [warned, *_] = [r for r in caplog.records if "could not renew" in r.getMessage()]
    assert warned.job_id == "job-for-the-lines"
