"""Benchmark: one big job through 1 worker process, then through 2, with the job split into bands.

Every worker process has one inference thread (on a 2-core machine, two processes use both cores). Prints
the job's latency from submit to succeeded, the speed-up, the peak RSS of each worker's pool process, the
band count and the assembly time, then a model of the latency with N workers built from those
measurements: T(N) = T_first + ceil(B / N) * t_band + T_assemble (the first worker decodes the input and
plans; each band costs t_band; the assembly is one worker's). It is a model, not a measurement.

    python bench/split_job.py                          # 5472x3648 (20 MP) x4, PNG out
    python bench/split_job.py --size 2000x1500 --scale 2 --format jpeg
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import time
from pathlib import Path

from common import job_id, platform, wait_for_jobs

from cli.processes import stop
from tests.workers import children
from worker.engine.precision import machine_line

sys.path.insert(0, str(Path(__file__).resolve().parent))
from huge_image import cached_input


def peak_rss_gib(pid: int) -> float:
    """Peak resident memory (VmHWM) of a running process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2
    return 0.0


def run(image: Path, processes: int, scale: int, fmt: str, band_pixels: int) -> dict:
    from api import create_app

    overrides = dict(inference_threads=1, max_upload_bytes=512 * 1024**2, max_input_pixels=100_000_000,
                     max_output_pixels=2_000_000_000, split_output_pixels=1, band_output_pixels=band_pixels,
                     lease_seconds=600, job_time_limit=7200)
    with platform(**overrides) as bench:
        client = create_app(bench.settings).test_client()
        workers = [bench.worker(f"w{i}", queues="inference") for i in range(processes)]
        try:
            def get(job: str) -> dict:
                return client.get(f"/v1/jobs/{job}").get_json()

            for _ in range(processes):  # every process loads its network before the clock starts
                warm = {"image": (io.BytesIO(_tiny_png()), "warm.png"), "scale": str(scale), "model": "residual_sr"}
                wait_for_jobs(get, [job_id(client.post("/v1/jobs", data=warm, content_type="multipart/form-data"))],
                              poll=0.2)
            started = time.monotonic()
            response = client.post("/v1/jobs", data={"image": (io.BytesIO(image.read_bytes()), image.name),
                                                     "scale": str(scale), "model": "residual_sr", "format": fmt},
                                   content_type="multipart/form-data")
            (job,) = wait_for_jobs(get, [job_id(response)], poll=0.2)
            latency = time.monotonic() - started
            rss = [max((peak_rss_gib(pid) for pid in children(w.pid)), default=0.0) for w in workers]
        finally:
            for worker in workers:
                stop(worker)
    if job["status"] != "succeeded":
        raise SystemExit(f"the job {job['status']}: {job.get('error')}")
    if job["output"]["format"] != fmt:  # the API ignores fields it does not know: --format once did nothing
        raise SystemExit(f"asked for {fmt}, the job made {job['output']['format']}")
    return {"latency": latency, "rss": rss, "bands": job["split"]["total"], "timings": job["timings"],
            "output": f"{job['output']['width']}x{job['output']['height']}"}


def _tiny_png() -> bytes:
    from tests.images import image_bytes

    return image_bytes(width=64, height=48)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="5472x3648")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--format", default="png", choices=["png", "jpeg", "tiff", "webp"])
    parser.add_argument("--band-pixels", type=int, default=16_000_000, help="output pixels per band")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    image = cached_input(width, height)
    print(f"input {width}x{height} ({width * height / 1e6:.1f} MP) x{args.scale} -> {args.format}, "
          f"bands of <= {args.band_pixels / 1e6:.0f} MP output, one thread per worker, on {machine_line()}")
    print("| worker processes | latency (s) | speed-up | bands | assembly (s) | peak RSS per worker (GiB) |")
    print("| --- | --- | --- | --- | --- | --- |")
    results = {}
    for processes in args.processes:
        r = run(image, processes, args.scale, args.format, args.band_pixels)
        results[processes] = r
        base = results[args.processes[0]]["latency"]
        print(f"| {processes} | {r['latency']:.1f} | {base / r['latency']:.2f}x | {r['bands']} | "
              f"{r['timings']['assemble_s']:.1f} | {', '.join(f'{v:.2f}' for v in r['rss'])} |", flush=True)
    one = results[args.processes[0]]
    timings, bands = one["timings"], one["bands"]
    # measured on the one-worker run, which does every band in turn after the first step
    first, assemble = timings["download_s"] + timings["decode_s"], timings["assemble_s"]
    t_band = (timings["bands_s"] - first) / bands
    print(f"\nmodel (from the {args.processes[0]}-worker run): T_first {first:.1f} s (download + decode + plan), "
          f"t_band {t_band:.2f} s, T_assemble {assemble:.1f} s, B {bands}")
    print("| workers | modelled latency (s) | speed-up |")
    print("| --- | --- | --- |")
    for n in (1, 2, 4, 8, 16):
        modelled = first + math.ceil(bands / n) * t_band + assemble
        print(f"| {n} | {modelled:.1f} | {(first + bands * t_band + assemble) / modelled:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
