"""``upscaler eval``: the Y-PSNR/SSIM table on Set5, Set14 and BSD68, network against bicubic."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cli.train import data_root


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="benchmark a model against bicubic (Y-PSNR / SSIM, the field's protocol)")
    p.add_argument("--model", default=None, help="default: $UPSCALER_DEFAULT_MODEL")
    p.add_argument("--data", type=Path, default=None, help="data root (default: $UPSCALER_DATA_DIR or ../shared/data)")
    p.add_argument("--sets", nargs="+", default=["set5", "set14", "bsd68"])
    p.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    p.add_argument("--no-ssim", action="store_true", help="PSNR only (SSIM is slow in pure numpy)")
    p.add_argument("--record", action="store_true",
                   help="store the PSNR table in the model's JSON record (shown by GET /v1/models)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from shared.catalog import BICUBIC
    from shared.settings import Settings
    from worker.engine.registry import EngineRegistry
    from worker.evaluation import load_benchmark, score

    settings = Settings.from_env()
    registry = EngineRegistry(settings)
    name = args.model or settings.default_model
    engine, baseline = registry.get(name), registry.get(BICUBIC)
    root = data_root(args.data) / "benchmark"

    def through(e):
        return lambda lr, s: np.asarray(e.upscale(lr, s))

    print(f"Y-channel PSNR (dB) / SSIM, shave = scale, LR by Pillow bicubic on modcropped HR; model {name}\n")
    print("| set | scale | bicubic PSNR | bicubic SSIM | model PSNR | model SSIM | gain (dB) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    table: dict[str, dict[str, float]] = {}
    for set_name in args.sets:
        images = load_benchmark(root / set_name)
        for scale in args.scales:
            base = score(through(baseline), images, scale, with_ssim=not args.no_ssim)
            ours = score(through(engine), images, scale, with_ssim=not args.no_ssim)
            table.setdefault(set_name, {})[f"x{scale}"] = round(ours.psnr, 2)
            print(f"| {set_name} ({base.images}) | x{scale} | {base.psnr:.2f} | {base.ssim:.4f} | {ours.psnr:.2f} | "
                  f"{ours.ssim:.4f} | {ours.psnr - base.psnr:+.2f} |", flush=True)
    if args.record and name != BICUBIC:
        record_path = registry.catalog[name].weights.with_name(f"{name}.json")
        record = json.loads(record_path.read_text())
        record["benchmark"] = {**record.get("benchmark", {}), **table}
        record_path.write_text(json.dumps(record, indent=2) + "\n")
        print(f"\nrecorded in {record_path}")
    return 0
