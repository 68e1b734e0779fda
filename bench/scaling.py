"""Benchmark: the same batch of jobs through 1 worker process, then 2, on this machine.

TensorFlow's thread pools are sized so processes don't fight for cores: with P processes on C cores each
process gets C / P intra-op threads (UPSCALER_INFERENCE_THREADS). Prints jobs per hour and the speed-up.

    python bench/scaling.py                          # 16 jobs of 512x512 x2 with the network
    python bench/scaling.py --jobs 8 --size 768 --scale 4
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from datetime import UTC, datetime

from common import job_id, platform, wait_for_jobs

from cli.processes import stop


def run_batch(processes: int, threads: int, jobs: int, size: int, scale: int, model: str) -> tuple[float, float]:
    """Seconds to finish ``jobs`` with ``processes`` worker processes, and mean engine seconds per job."""
    from api import create_app
    from tests.images import image_bytes

    with platform(inference_threads=threads, worker_concurrency=processes) as bench:
        client = create_app(bench.settings).test_client()
        worker = bench.worker("scale", concurrency=processes, queues="inference")

        def submit(seed: int) -> str:
            data = {"image": (io.BytesIO(image_bytes(width=size, height=size, seed=seed)), "in.png"),
                    "scale": str(scale), "model": model}
            return job_id(client.post("/v1/jobs", data=data, content_type="multipart/form-data"))

        def get(job: str) -> dict:
            return client.get(f"/v1/jobs/{job}").get_json()

        try:
            wait_for_jobs(get, [submit(seed) for seed in range(processes)])  # warm: model loaded, graph traced
            started = datetime.now(UTC)
            # polled twice a second (every 50 ms took a quarter of a core from the workers being measured); the
            # time is read from the jobs' own finish times, so the polling adds nothing to it
            done = wait_for_jobs(get, [submit(seed) for seed in range(jobs)])
            elapsed = (max(datetime.fromisoformat(d["finished_at"]) for d in done) - started).total_seconds()
        finally:
            stop(worker)
    failed = [d for d in done if d["status"] != "succeeded"]
    if failed:
        raise SystemExit(f"{len(failed)} jobs failed: {failed[0]['error']}")
    return elapsed, sum(d["timings"]["inference_s"] for d in done) / len(done)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--size", type=int, default=512, help="input side in pixels")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--model", default="residual_sr")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    from worker.engine.precision import machine_line

    print(f"{args.jobs} jobs of {args.size}x{args.size} x{args.scale} ({args.model}), on {machine_line()}")
    print("| sizing | worker processes | threads each | seconds | jobs/hour | engine s/job | speed-up |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    # "one core per process" is how workers scale out (each new process brings its own core);
    # "all cores shared" asks how much a second process adds once one process already uses every core.
    for sizing, threads_for in (("one core per process", lambda p: max(1, cores // max(args.processes))),
                                ("all cores shared", lambda p: max(1, cores // p))):
        base = None
        for processes in args.processes:
            threads = threads_for(processes)
            elapsed, engine = run_batch(processes, threads, args.jobs, args.size, args.scale, args.model)
            rate = args.jobs / elapsed * 3600
            base = base or rate
            print(f"| {sizing} | {processes} | {threads} | {elapsed:.1f} | {rate:.0f} | {engine:.2f} | "
                  f"{rate / base:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
