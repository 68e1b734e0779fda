"""``upscaler upscale IN OUT --scale N``: a local one-shot through the same engine, no queue."""

from __future__ import annotations

import argparse
from pathlib import Path

from shared.limits import OUTPUT_FORMATS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("upscale", help="upscale one image file locally (same engine and tiling as the worker)")
    p.add_argument("input", type=Path)
    p.add_argument("output", type=Path)
    p.add_argument("--scale", type=int, choices=(2, 3, 4), default=4)
    p.add_argument("--model", default=None, help="model name (default: $UPSCALER_DEFAULT_MODEL); 'bicubic' too")
    p.add_argument("--tile", type=int, default=None, help="tile side in input pixels (default: $UPSCALER_TILE_SIZE)")
    p.add_argument("--format", choices=sorted(OUTPUT_FORMATS), default=None,
                   help="output format (default: from the output file's extension)")
    p.add_argument("--quality", type=int, default=None)
    p.set_defaults(func=run)


def output_format_for(path: Path, explicit: str | None) -> str:
    if explicit:
        return explicit
    suffix = path.suffix.lower().lstrip(".")
    return {"jpg": "jpeg", "jpeg": "jpeg", "webp": "webp"}.get(suffix, "png")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from shared.settings import Settings
    from worker.engine.registry import EngineRegistry
    from worker.render import render

    overrides = {"tile_size": args.tile} if args.tile else {}
    settings = Settings.from_env(**overrides)
    engine = EngineRegistry(settings).get(args.model or settings.default_model)
    bar = tqdm(total=1, unit="tile", desc=f"{engine.name} x{args.scale}")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    result = render(args.input, args.output, engine, args.scale, output_format_for(args.output, args.format),
                    args.quality, progress)
    bar.close()
    print(f"wrote {args.output} ({result.width}x{result.height}) "
          f"decode {result.timings['decode_s']:.2f}s, inference {result.timings['inference_s']:.2f}s, "
          f"encode {result.timings['encode_s']:.2f}s")
    return 0
