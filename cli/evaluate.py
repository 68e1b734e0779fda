"""``upscaler eval``: Y-PSNR/SSIM tables for every protocol, each model against bicubic of the same file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from cli.arguments import positive_int
from cli.train import data_root


def add_parser(sub: argparse._SubParsersAction) -> None:
    from shared.limits import SCALES
    from worker.evaluation import BENCHMARK_SETS, PROTOCOLS

    p = sub.add_parser("eval", help="benchmark models against bicubic (Y-PSNR / SSIM) on clean and JPEG/noisy inputs")
    p.add_argument("--models", nargs="+", default=None,
                   help="models to measure (default: $UPSCALER_DEFAULT_MODEL); each LR is a real file run through "
                        "the job's path")
    p.add_argument("--degradation", nargs="+", choices=PROTOCOLS, default=["clean"],
                   help="protocols: clean (lossless LR), jpegQ (LR saved as a JPEG file of quality Q), webpQ (a lossy "
                        "WebP of quality Q), heifQ / avifQ (a HEIC or "
                        "AVIF of quality Q), "
                        "noise (Gaussian sigma 10, lossless), noise_jpeg90 (that noise, then a JPEG of quality 90), "
                        "grey_noise (grey Gaussian sigma 6, lossless), jpegQ_png (a JPEG of quality Q decoded and "
                        "saved again as PNG, its grid off the corner as a crop leaves it), jpegQ_jpegR (a JPEG of "
                        "quality Q saved again at R)")
    p.add_argument("--data", type=Path, default=None,
                   help="data root (default: $UPSCALER_DATA_DIR or ../shared/data beside the checkout)")
    p.add_argument("--sets", nargs="+", default=list(BENCHMARK_SETS))
    p.add_argument("--limit", type=positive_int, default=None, help="first N images of each set (sorted by name)")
    p.add_argument("--scales", type=int, nargs="+", choices=(1, *SCALES), default=list(SCALES),
                   help="x1: the benchmark image itself is the truth and the damaged file is asked at its own size "
                        "(a restore; bicubic is then the file as it is)")
    p.add_argument("--no-ssim", action="store_true", help="PSNR only (SSIM is slow in pure numpy)")
    p.add_argument("--record", action="store_true",
                   help="store the PSNR tables in the models' JSON records (shown by GET /v1/models)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from shared.catalog import BICUBIC, write_record
    from shared.settings import Settings
    from worker.engine.precision import choose_precision, machine_line
    from worker.engine.registry import EngineRegistry
    from worker.evaluation import check_writers, evaluate_files, load_benchmark

    settings = Settings.from_env(secret=False)
    engines = EngineRegistry(settings)
    # each once, in the order given: a model named twice was measured twice, then a traceback
    models = [m for m in dict.fromkeys(args.models or [settings.default_model]) if m != BICUBIC]
    unknown = [m for m in models if m not in engines.catalog]
    if unknown or not models:
        print(f"upscaler eval: unknown model(s) {', '.join(unknown)}; known: {', '.join(sorted(engines.catalog))}"
              if unknown else "upscaler eval: name a model to measure; bicubic is the baseline every row has",
              file=sys.stderr)
        return 2
    # everything a run needs is checked before its first measurement: a missing codec or a mistyped set was found
    # only after the earlier tables were measured, and --record then saved none of them
    check_writers(args.degradation)
    root = data_root(args.data) / "benchmark"
    # one image past the limit, not the whole set: it says whether the limit cut the set (the table's "_N")
    loaded = {set_name: load_benchmark(root / set_name, args.limit + 1 if args.limit else None)
              for set_name in dict.fromkeys(args.sets)}
    sets = {set_name: images[:args.limit] for set_name, images in loaded.items()}
    tables: dict[str, dict] = {m: {} for m in models}
    suffix = f", first {args.limit} images" if args.limit else ""
    print(f"Y-channel PSNR (dB) / SSIM, shave = scale, LR by Pillow bicubic on modcropped HR, saved as a file{suffix}")
    print(f"on {machine_line()}, inference in {choose_precision(settings.inference_precision)}")
    print("gain = model - bicubic of the same file; worst = the smallest gain on any single image\n")
    print("| protocol | set | scale | bicubic PSNR | bicubic SSIM | model | PSNR | SSIM | gain (dB) | worst (dB) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for protocol in dict.fromkeys(args.degradation):
        for set_name, images in sets.items():
            # "<set>_<N>" only where the limit cut the set: "set5_16" named a table of Set5's 5 images
            label = f"{set_name}_{args.limit}" if args.limit and args.limit < len(loaded[set_name]) else set_name
            for scale in args.scales:
                scores = evaluate_files(engines, [BICUBIC, *models], images, scale, protocol, not args.no_ssim)
                base = scores[BICUBIC]
                for model in models:
                    ours = scores[model]
                    worst = min(_gain(o, b) for o, b in zip(ours.per_image, base.per_image, strict=True))
                    # an exact copy (x1 clean: inf dB) is printed, not recorded: Infinity is not JSON
                    if np.isfinite(ours.psnr) and np.isfinite(base.psnr):
                        cell = tables[model].setdefault(protocol, {})
                        cell.setdefault(label, {})[f"x{scale}"] = round(ours.psnr, 2)
                        cell.setdefault(f"{label}_bicubic", {})[f"x{scale}"] = round(base.psnr, 2)
                    print(f"| {protocol} | {label} ({base.images}) | x{scale} | {base.psnr:.2f} | {base.ssim:.4f} | "
                          f"{model} | {ours.psnr:.2f} | {ours.ssim:.4f} | {_gain(ours.psnr, base.psnr):+.2f} | "
                          f"{worst:+.2f} |", flush=True)
    if args.record:
        for model, table in tables.items():
            info = engines.catalog[model]
            benchmark = {k: dict(v) for k, v in info.benchmark.items()}
            for protocol, sets in table.items():
                for set_name, scales in sets.items():
                    benchmark.setdefault(protocol, {}).setdefault(set_name, {}).update(scales)
            path = write_record(settings.models_dir, model, {"benchmark": benchmark})
            print(f"recorded in {path}")
    return 0


def _gain(ours: float, base: float) -> float:
    """Model minus bicubic in dB; 0 where both are exact copies of the truth (inf - inf)."""
    return 0.0 if ours == base else ours - base
