"""Benchmark: a 20-megapixel photo-like image upscaled x2 and x4 by the network and by Pillow bicubic.

Each measurement runs in its own process so peak RSS (ru_maxrss) is that run's alone, and goes file to file
through ``worker.render`` as a job does (decode, network, encode; the network's output streamed in bands,
Pillow bicubic whole in memory). Prints the inference and total wall time, milliseconds per input
megapixel, peak RSS and, for the network, achieved GFLOP/s (multiply-adds per LR pixel x LR pixels x 2 /
inference time).

    python bench/huge_image.py                 # 5472x3648, x2 and x4, network and bicubic
    python bench/huge_image.py --size 2000x1500 --scales 4 --engines residual_sr
    python bench/huge_image.py --format tiff          # print output: tiled Deflate (Big)TIFF
    python bench/huge_image.py --scales 4 --engines residual_sr_cond --precisions float32 bfloat16
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_input(width: int, height: int, path: Path) -> None:
    """A photo-like test image: a training photo upscaled to the size, plus fine grain."""
    import numpy as np
    from PIL import Image

    source = sorted((ROOT.parent / "shared" / "data" / "train" / "sun_hays80").glob("*.jpg"))
    if source:
        base = Image.open(source[0]).convert("RGB").resize((width, height), Image.BICUBIC)
    else:
        yy, xx = np.mgrid[0:height, 0:width]
        base = Image.fromarray(np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8))
    grain = np.random.default_rng(0).normal(0, 4, (height, width, 1))
    arr = np.clip(np.asarray(base, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
    partial = path.with_name(path.name + ".partial")
    Image.fromarray(arr).save(partial, "PNG", compress_level=1)
    partial.replace(path)  # whole or absent: an interrupted run left a truncated file every later run reused


def cached_input(width: int, height: int) -> Path:
    """The benchmark image of this size, made once and kept in $TMPDIR (``bench-WxH.png``, 28 MB at 20 MP), in a
    child of its own: a forked child starts with its parent's peak RSS."""
    image = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-{width}x{height}.png"
    if not image.exists():
        subprocess.run([sys.executable, __file__, "--make-input", str(width), str(height), str(image)], check=True)
    return image


def measure(engine_name: str, scale: int, image_path: str, tile: int | None, fmt: str) -> dict:
    """Runs inside a child process: load, render the file once, report."""
    import tempfile

    import numpy as np
    from PIL import Image

    from shared.settings import Settings
    from shared.sizing import SizeRequest
    from worker.engine.registry import EngineRegistry
    from worker.render import render

    overrides = {"tile_size": tile} if tile else {}
    settings = Settings.from_env(**overrides)
    engines = EngineRegistry(settings)
    engine = engines.get(engine_name)
    if hasattr(engine, "predict"):  # warm up the compiled graph on one tile, outside the timing
        engine.upscale(np.zeros((64, 64, 3), np.uint8), scale)
    with Image.open(image_path) as opened:
        width, height = opened.size
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        rendered = render(Path(image_path), Path(tmp) / f"out.{fmt}", engines, engine_name, SizeRequest(scale=scale),
                          fmt, denoise=0.5 if engine.conditioned else None,
                          band_pixels=settings.band_output_pixels)
        seconds = time.perf_counter() - started
    inference = rendered.timings["inference_s"]
    megapixels = width * height / 1e6
    result = {"engine": engine_name, "scale": scale, "input": f"{width}x{height}",
              "output": f"{rendered.width}x{rendered.height}", "inference_s": round(inference, 2),
              "seconds": round(seconds, 2), "ms_per_input_mp": round(inference * 1000 / megapixels, 1),
              "bands": rendered.bands, "precision": rendered.precision or "-",
              "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3)}
    if hasattr(engine, "config"):
        macs = engine.config.multiply_adds_per_lr_pixel(scale)
        result["gflops"] = round(macs * width * height * 2 / inference / 1e9, 1)
        result["tile"] = engine.tile_size
    return result


def main() -> int:
    from shared.settings import PRECISION_CHOICES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="5472x3648")
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--engines", nargs="+", default=["residual_sr", "residual_sr_cond", "bicubic"])
    parser.add_argument("--tile", type=int, default=None, help="tile size (default: the setting, 256)")
    parser.add_argument("--format", default="png", choices=["png", "jpeg", "tiff", "webp"])
    parser.add_argument("--precisions", nargs="+", default=["auto"], choices=PRECISION_CHOICES,
                        help="UPSCALER_INFERENCE_PRECISION of each run (auto: bf16 where the CPU has it natively)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--make-input", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_input:
        make_input(int(args.make_input[0]), int(args.make_input[1]), Path(args.make_input[2]))
        return 0
    if args.child:
        engine, scale, path = args.child
        print(json.dumps(measure(engine, int(scale), path, args.tile, args.format)))
        return 0
    width, height = (int(v) for v in args.size.split("x"))
    image = cached_input(width, height)
    from worker.engine.precision import machine_line

    print(f"input {width}x{height} = {width * height / 1e6:.1f} MP, {args.format} out, on {machine_line()}")
    print("| engine | precision | scale | output | inference s | file to file s | ms / input MP | bands "
          "| peak RSS (GiB) | GFLOP/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for engine, precision, scale in itertools.product(args.engines, args.precisions, args.scales):
        cmd = [sys.executable, __file__, "--child", engine, str(scale), str(image), "--format", args.format]
        if args.tile:
            cmd += ["--tile", str(args.tile)]
        # a fixed secret: without one, Settings makes var/secret_key wherever the benchmark is run from
        env = {"UPSCALER_SECRET_KEY": "bench-secret-0123456789", **os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
               "UPSCALER_INFERENCE_PRECISION": precision}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode:
            raise SystemExit(f"{engine} x{scale} ({precision}) failed:\n{done.stderr.strip()[-3000:]}")
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"| {r['engine']} | {r['precision']} | x{r['scale']} | {r['output']} | {r['inference_s']} | "
              f"{r['seconds']} | {r['ms_per_input_mp']} | {r['bands']} | {r['peak_rss_gib']} | "
              f"{r.get('gflops', '-')} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
