"""Fair scheduling: one tenant's flood must not starve another tenant's small jobs.

    python bench/fairness.py                 # A: 200 jobs of 192x192 x2, then B: 5 jobs of 64x64 x2; 1 worker
    python bench/fairness.py --fifo          # every job published at priority 0 (the turns still fair)

Tenant A submits its whole batch first, then tenant B submits its jobs. Printed: A's mean job time (the
worker's total per job), B's waits (start minus submit), their p95, and the ratio to A's job time. Goal:
B's p95 wait <= 2 of A's jobs, whatever A's backlog (the worker gives each turn to the least-served tenant,
shared.jobs.next_fair_job). Real processes: a Celery worker, Redis, SQLite. ``--fifo`` publishes every job at
priority 0; the turns are still chosen in the worker.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys

from common import job_id, platform, wait_for_jobs

from cli.processes import stop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a-jobs", type=int, default=200)
    parser.add_argument("--b-jobs", type=int, default=5)
    parser.add_argument("--a-size", type=int, default=192)
    parser.add_argument("--b-size", type=int, default=64)
    parser.add_argument("--model", default="residual_sr")
    parser.add_argument("--fifo", action="store_true", help="publish every job at priority 0 (turns stay fair)")
    args = parser.parse_args()

    from api import create_app
    from shared import jobs as job_ops
    from shared.db import unit_of_work
    from shared.tenants import create_key
    from tests.images import image_bytes

    if args.fifo:
        job_ops.priority_for = lambda ahead: 0  # the FIFO baseline: no tenant awareness
    with platform(inference_threads=0) as bench:
        app = create_app(bench.settings)
        client = app.test_client()
        with unit_of_work(app.extensions["upscaler"].sessions) as session:
            keys = {name: create_key(session, name)[1] for name in ("tenant-a", "tenant-b")}
        worker = bench.worker("fair", queues="inference")

        def submit(tenant: str, size: int, seed: int) -> str:
            data = {"image": (io.BytesIO(image_bytes(width=size, height=size, seed=seed)), "in.png"), "scale": "2",
                    "model": args.model}
            return job_id(client.post("/v1/jobs", data=data, content_type="multipart/form-data",
                                      headers={"Authorization": f"Bearer {keys[tenant]}"}))

        def get(tenant: str, job_id: str) -> dict:
            return client.get(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {keys[tenant]}"}).get_json()

        try:
            # the worker loads its network before anything is timed; a failed warm-up ends the benchmark
            (warm,) = wait_for_jobs(lambda j: get("tenant-a", j), [submit("tenant-a", 32, 0)], timeout=600, poll=0.2)
            if warm["status"] != "succeeded":
                raise SystemExit(f"the warm-up job {warm['status']}: {warm.get('error')}")
            a_ids = [submit("tenant-a", args.a_size, seed) for seed in range(args.a_jobs)]
            b_ids = [submit("tenant-b", args.b_size, seed) for seed in range(args.b_jobs)]
            b_jobs = wait_for_jobs(lambda j: get("tenant-b", j), b_ids, poll=0.2)
            a_done = [j for j in (get("tenant-a", i) for i in a_ids) if j["status"] == "succeeded"]
        finally:
            stop(worker)
    from datetime import datetime

    def seconds(job: dict, start: str, end: str) -> float:
        return (datetime.fromisoformat(job[end]) - datetime.fromisoformat(job[start])).total_seconds()

    a_time = statistics.mean(seconds(j, "started_at", "finished_at") for j in a_done)
    waits = sorted(seconds(j, "created_at", "started_at") for j in b_jobs)
    p95 = waits[min(len(waits) - 1, round(0.95 * (len(waits) - 1)))]
    scheduling = "priority 0 for all, fair turns" if args.fifo else "fair priorities and turns"
    print(f"{scheduling}: A {args.a_jobs} jobs of {args.a_size}px, B {args.b_jobs} jobs of {args.b_size}px, "
          f"x2 {args.model}, 1 worker")
    print(f"A's job time (mean of {len(a_done)} finished while B ran): {a_time:.2f} s")
    print(f"B's waits (s): {', '.join(f'{w:.2f}' for w in waits)}")
    print(f"B's p95 wait: {p95:.2f} s = {p95 / a_time:.2f} x A's job time (goal <= 2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
