"""Benchmark: submit throughput and latency of the API under a production WSGI server.

Starts its own Redis, a migrated SQLite database, local storage and ``upscaler api`` (gunicorn), then
runs N concurrent clients, each posting a ~1 MB JPEG in a loop for D seconds (closed loop, keep-alive).
No worker runs: this measures the submit path only (validation + storage put + row insert + enqueue).

    python bench/submit_load.py                     # 32 clients, 20 s, gunicorn cores + 1 workers x 4 threads
    python bench/submit_load.py --clients 8 --workers 3 --threads 4
"""

from __future__ import annotations

import argparse
import collections
import http.client
import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import bench_settings, child_env  # noqa: E402

from cli.processes import free_port, start_redis, stop, wait_for_port  # noqa: E402
from worker.engine.precision import machine_line  # noqa: E402


def jpeg_of_about(target_bytes: int) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    side = 900
    while True:
        yy, xx = np.mgrid[0:side, 0:side]
        base = np.stack([xx % 256, yy % 256, (xx * yy) % 256], -1).astype(np.float32)
        arr = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(arr).save(buffer, "JPEG", quality=90)
        if buffer.tell() >= target_bytes:
            return buffer.getvalue()
        side += 100


def multipart(image: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="scale"\r\n\r\n4\r\n'.encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="p.jpg"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode(), image, f"\r\n--{boundary}--\r\n".encode(),
    ]
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def client_loop(port: int, body: bytes, content_type: str, until: float, latencies: list, errors: list) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while time.monotonic() < until:
        started = time.perf_counter()
        try:
            conn.request("POST", "/v1/jobs", body, {"Content-Type": content_type})
            response = conn.getresponse()
            response.read()
            if response.status != 202:
                errors.append(response.status)
            else:
                latencies.append(time.perf_counter() - started)
        except (OSError, http.client.HTTPException) as exc:
            errors.append(type(exc).__name__)
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=None, help="gunicorn worker processes (default: cores + 1, "
                                                                  "what `upscaler api` starts)")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--image-bytes", type=int, default=1_000_000)
    args = parser.parse_args()

    image = jpeg_of_about(args.image_bytes)
    body, content_type = multipart(image)
    workers = args.workers or (os.cpu_count() or 1) + 1
    with tempfile.TemporaryDirectory(prefix="upscaler-bench-") as tmp:
        redis, redis_port = start_redis(Path(tmp) / "redis")
        api = None
        try:
            port = free_port()
            # the whole configuration is the benchmark's own (an operator's exported settings sent its uploads to
            # a real bucket); no per-tenant limits: a load test measures the submit path
            settings = bench_settings(Path(tmp), f"redis://127.0.0.1:{redis_port}/0")
            env = child_env(settings, Path(tmp))
            upscaler = [sys.executable, "-m", "cli"]
            migrated = subprocess.run([*upscaler, "migrate"], env=env, capture_output=True, text=True)
            if migrated.returncode:
                raise SystemExit(f"migrate failed: {migrated.stderr.strip()[-2000:]}")
            api = subprocess.Popen([*upscaler, "api", "--port", str(port), "--workers", str(workers),
                                    "--threads", str(args.threads)], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            wait_for_port("127.0.0.1", port, timeout=60, process=api)
            latencies: list[float] = []
            errors: list = []
            warm_until = time.monotonic() + 2
            client_loop(port, body, content_type, warm_until, [], [])
            until = time.monotonic() + args.seconds
            threads = [threading.Thread(target=client_loop, args=(port, body, content_type, until, latencies, errors))
                       for _ in range(args.clients)]
            started = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.monotonic() - started
        finally:
            if api is not None:
                stop(api)
            stop(redis)
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000

    print(f"{args.clients} clients x {args.seconds:.0f} s, {len(image) / 1e6:.2f} MB JPEG, gunicorn "
          f"{workers} workers x {args.threads} threads, on {machine_line()}")
    print(f"requests {len(latencies)}, errors {len(errors)}"
          f"{' ' + str(dict(collections.Counter(errors))) if errors else ''}, {len(latencies) / elapsed:.1f} req/s, "
          f"{len(latencies) * len(image) / elapsed / 1e6:.1f} MB/s")
    if latencies:
        print(f"latency ms: p50 {pct(50):.1f}  p90 {pct(90):.1f}  p99 {pct(99):.1f}  max {latencies[-1] * 1000:.1f}  "
              f"mean {statistics.mean(latencies) * 1000:.1f}")
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
