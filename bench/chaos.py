"""Chaos benchmark: hundreds of small jobs through 3 worker processes while workers are SIGKILLed and
restarted every few seconds and Redis is restarted once; every job asks for webhooks to a local receiver.
Some jobs are split jobs (the network, cut into bands that run on every worker): workers die mid-band.

Prints submitted, succeeded, failed (by code), duplicated results, lost jobs, webhook deliveries, split jobs
whose result differs from the single-worker one, leftover band files and the wall time. The goal: 0 lost,
0 duplicated, every webhook delivered, every split result exact, no band file left.

    python bench/chaos.py                 # 300 jobs (12 of them split), 3 workers, a kill every 3 s
    python bench/chaos.py --jobs 100 --split-jobs 6 --kill-every 2
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import os
import random
import signal
import sys
import time

from common import job_id, platform

from cli.processes import stop
from tests.receiver import Receiver
from tests.workers import children


def flaky(fail_ratio: float):
    """A responder that answers 500 to ``fail_ratio`` of first attempts, so retries are exercised too."""
    rng = random.Random(7)
    seen: set[str] = set()

    def respond(headers: dict[str, str], _body: bytes) -> int:
        first_time = headers["webhook-id"] not in seen
        seen.add(headers["webhook-id"])
        return 500 if first_time and rng.random() < fail_ratio else 204

    return respond


def kill(process) -> None:
    """SIGKILL a worker and its pool: the whole machine vanishing, the harshest case."""
    for pid in [*children(process.pid), process.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--split-jobs", type=int, default=12, help="of the jobs, how many are split into bands")
    parser.add_argument("--kill-every", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()

    from sqlalchemy import func, select

    from api import create_app
    from shared.db import make_engine, make_session_factory
    from shared.models import Job, JobBand, WebhookDelivery
    from tests.images import image_bytes

    receiver = Receiver(respond=flaky(0.1))
    started = time.monotonic()
    # Split jobs: 320x240 x2 with the network, 48-px tiles (49 with their margin), bands of two tile rows (14
    # bands a job);
    # the small bicubic jobs stay whole.
    overrides = dict(lease_seconds=4, sweep_interval=1.0, queued_stale_seconds=10, visibility_timeout=30,
                     webhook_allow_private=True, webhook_retry_schedule="1,2,4,8,16,32", inference_threads=1,
                     tile_size=48, band_output_pixels=41_000, split_output_pixels=50_000)
    split_image = image_bytes(width=320, height=240, seed=3)
    split_every = max(1, args.jobs // max(args.split_jobs, 1)) if args.split_jobs else 0
    with platform(**overrides) as bench:
        client = create_app(bench.settings).test_client()
        database = make_engine(bench.settings.database_url)  # one engine: a new one every poll leaked connections
        sessions = make_session_factory(database)
        beat = bench.worker("beat", queues="maintenance", beat=True)
        workers = [bench.worker(f"w{i}") for i in range(args.workers)]
        rng = random.Random(1)
        kills = 0
        redis_restarted = False
        ids: list[str] = []
        split_ids: list[str] = []
        image = image_bytes(width=48, height=40)
        next_kill = time.monotonic() + args.kill_every
        deadline = time.monotonic() + args.timeout
        try:
            while time.monotonic() < deadline:
                if len(ids) < args.jobs:
                    for _ in range(min(10, args.jobs - len(ids))):
                        split = split_every and len(ids) % split_every == 0 and len(split_ids) < args.split_jobs
                        response = client.post("/v1/jobs", data={
                            "image": (io.BytesIO(split_image if split else image), "a.png"),
                            "model": "residual_sr" if split else "bicubic", "scale": "2",
                            "webhook_url": receiver.url, "webhook_events": "job.started,job.succeeded,job.failed"},
                            content_type="multipart/form-data")
                        ids.append(job_id(response))
                        if split:
                            split_ids.append(ids[-1])
                if not redis_restarted and len(ids) >= args.jobs // 2:
                    bench.restart_redis()
                    redis_restarted = True
                if time.monotonic() >= next_kill:
                    victim = rng.randrange(len(workers))
                    kill(workers[victim])
                    workers[victim] = bench.worker(f"w{victim}-{kills}")
                    kills += 1
                    next_kill = time.monotonic() + args.kill_every
                with sessions() as session:
                    open_jobs = session.scalar(select(func.count()).select_from(Job).where(
                        Job.status.in_(["queued", "running"])))
                    pending_hooks = session.scalar(select(func.count()).select_from(WebhookDelivery).where(
                        WebhookDelivery.status == "pending"))
                if len(ids) >= args.jobs and open_jobs == 0 and pending_hooks == 0:
                    break
                time.sleep(0.5)
        finally:
            for process in [*workers, beat]:
                stop(process)
        wall = time.monotonic() - started
        with sessions() as session:
            jobs = session.scalars(select(Job)).all()
            rerun_bands = session.scalar(select(func.count()).select_from(JobBand).where(JobBand.attempts > 1))
            deliveries = session.scalars(select(WebhookDelivery)).all()
        database.dispose()
        results = [p for p in (bench.settings.storage_dir / "results").rglob("*") if p.is_file()]
        partials = list((bench.settings.storage_dir / ".partial").glob("*"))
        band_files = [p for p in (bench.settings.storage_dir / "bands").rglob("*") if p.is_file()]
        inexact = not_split = 0
        if split_ids:
            import numpy as np
            from PIL import Image

            from worker.engine.registry import EngineRegistry

            engine = EngineRegistry(bench.settings).get("residual_sr")
            reference = np.asarray(engine.upscale(np.asarray(Image.open(io.BytesIO(split_image)).convert("RGB")), 2))
            by_id = {j.id: j for j in jobs}
            for split_id in split_ids:
                job = by_id[split_id]
                not_split += not job.bands_total
                if job.status == "succeeded":
                    with Image.open(bench.settings.storage_dir / job.output_key) as out:
                        inexact += not np.array_equal(np.asarray(out), reference)

    status = collections.Counter(j.status for j in jobs)
    codes = collections.Counter(j.error_code for j in jobs if j.status == "failed")
    # keys name neither job nor tenant: a result object is some succeeded job's output_key, or an orphan
    outputs = {j.output_key for j in jobs if j.status == "succeeded"}
    keys = {p.relative_to(bench.settings.storage_dir).as_posix() for p in results}
    orphans = len(keys - outputs)
    duplicated = orphans  # a job's second result could only be an object no job points to
    expected_events = sum(2 for j in jobs if j.status in ("succeeded", "failed"))
    delivered = sum(1 for d in deliveries if d.status == "delivered")
    print(f"submitted {len(ids)} jobs to {args.workers} worker processes; {kills} workers SIGKILLed and replaced; "
          f"Redis restarted {int(redis_restarted)}x")
    print(f"succeeded {status['succeeded']}, failed {status['failed']} {dict(codes) or ''}, "
          f"lost (still queued/running) {status['queued'] + status['running']}")
    print(f"result objects {len(results)}, duplicated results {duplicated}, orphan results {orphans}, "
          f"jobs run more than once {sum(1 for j in jobs if j.attempts > 1)}, partial files of killed uploads "
          f"{len(partials)}")
    print(f"webhook messages {len(deliveries)} (expected {expected_events}), delivered {delivered}, "
          f"retried {sum(1 for d in deliveries if d.attempts > 1)}, failed "
          f"{sum(1 for d in deliveries if d.status == 'failed')}, distinct messages received "
          f"{len(receiver.delivered_ids())}, POSTs received {len(receiver.requests)}")
    split_jobs = [j for j in jobs if j.id in set(split_ids)]
    print(f"split jobs {len(split_ids)} ({sum(j.bands_total or 0 for j in split_jobs)} bands, "
          f"{sum(1 for j in split_jobs if j.status == 'succeeded')} succeeded, {not_split} not split, {rerun_bands} "
          f"bands run again after their worker was killed), results "
          f"different from the single-worker one {inexact}, band files left {len(band_files)}")
    print(f"wall time {wall:.1f} s")
    lost = status["queued"] + status["running"]
    exact = inexact == 0 and not_split == 0 and not band_files
    return 0 if lost == 0 and duplicated == 0 and delivered == expected_events and exact else 1


if __name__ == "__main__":
    sys.exit(main())
