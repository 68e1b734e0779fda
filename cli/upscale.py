"""``upscaler upscale``: upscale files locally through the worker's own path (no API, no queue).

``upscaler upscale IN OUT`` does one file; ``upscaler upscale DIR_OR_FILES... OUTDIR`` does many with the
model loaded once, one progress bar over all of them, and ``OUTDIR/<input stem>.<ext>`` for each.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cli.arguments import quality, target_side
from cli.files import expand, output_format_for, refuse_overwriting_inputs, result_names
from shared.errors import Refusal
from shared.formats import INPUT_SUFFIXES, sniff
from shared.limits import EXTENSIONS, OUTPUT_FORMATS, SUFFIX_FORMATS, check_job
from shared.sizing import FITS, MAX_FACTOR, MIN_FACTOR, SizeRequest
from shared.sizing import plan as plan_size

if TYPE_CHECKING:
    from shared.catalog import ModelInfo
    from shared.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("upscale", help="upscale image files locally (same engine, route and tiling as the worker)",
                       description="IN OUT for one file, or DIR_OR_FILES... OUTDIR for many")
    p.add_argument("paths", type=Path, nargs="+", metavar="PATH",
                   help="input file(s) or folder(s), then the output file (one input) or output folder")
    p.add_argument("--scale", type=float, default=None,
                   help="factor 1..8, fractions allowed (default 4 without --width/--height)")
    p.add_argument("--width", type=target_side, default=None, help="output width in pixels (keeps the aspect alone)")
    p.add_argument("--height", type=target_side, default=None,
                   help="output height in pixels (keeps the aspect alone)")
    p.add_argument("--fit", choices=FITS, default="contain", help="with both --width and --height")
    p.add_argument("--model", default=None, help="model name (default: $UPSCALER_DEFAULT_MODEL, 'auto'); 'bicubic' too")
    p.add_argument("--denoise", default="auto",
                   help="restoration strength 0..1, or 'auto' to measure it from each file (models with denoise)")
    p.add_argument("--tile", type=int, default=None, help="tile side in input pixels (default: $UPSCALER_TILE_SIZE)")
    p.add_argument("--format", choices=sorted(OUTPUT_FORMATS), default=None,
                   help="output format (default: from the output file's extension; png for a folder)")
    p.add_argument("--quality", type=quality, default=None, help="JPEG/WebP quality 1..100 (default 92 / 90)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace results that exist (else a folder's are skipped, a named output file refused)")
    p.set_defaults(func=run)


def parse_denoise(value: str) -> float | None:
    """'auto' -> None, else a strength in 0..1 (argparse-style error otherwise)."""
    if value.strip().lower() == "auto":
        return None
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0.0 <= number <= 1.0:
        raise SystemExit(f"upscaler upscale: --denoise must be 'auto' or a number from 0 to 1, not {value!r}")
    return number


def size_request(args: argparse.Namespace) -> SizeRequest:
    if args.scale is not None and (args.width or args.height):
        raise SystemExit("upscaler upscale: give --scale or --width/--height, not both")
    if args.scale is not None and not MIN_FACTOR <= args.scale <= MAX_FACTOR:
        raise SystemExit(f"upscaler upscale: --scale must be from {MIN_FACTOR:g} to {MAX_FACTOR:g}")
    return SizeRequest(args.scale, args.width, args.height, args.fit)  # no size at all: plan()'s default x4


def plan(paths: list[Path], explicit_format: str | None) -> tuple[list[tuple[Path, Path, str]], bool]:
    """(input, output, format) for each file, and whether this is the single-file form (one input that is not a
    folder, an output named like an image) rather than the many-files-into-a-folder form."""
    *inputs, target = paths
    if not inputs:
        raise SystemExit("upscaler upscale: give input file(s) or folder(s) and then an output file or folder")
    single = len(inputs) == 1 and not inputs[0].is_dir() and not target.is_dir() \
        and target.suffix.lower() in INPUT_SUFFIXES | set(SUFFIX_FORMATS)
    if single:
        refuse_overwriting_inputs({inputs[0]: target})
        return [(inputs[0], target, output_format_for(target, explicit_format))], True
    if target.exists() and not target.is_dir():
        raise SystemExit(f"upscaler upscale: {target} is a file; name an output folder for these inputs")
    fmt = explicit_format or "png"
    files = expand(inputs)
    names = result_names(files, target, EXTENSIONS[fmt])
    return [(f, names[f], fmt) for f in files], False


def check_file(source: Path, size: SizeRequest, fmt: str, model: ModelInfo,
               settings: Settings) -> None:
    """What the API checks before a job is made, before any inference: a readable image within the pixel limit, a
    size the model has the scales for, an output the format and the memory limits allow."""
    if not source.is_file():
        raise FileNotFoundError("no such file")
    found = sniff(source.read_bytes(), settings.max_input_pixels)
    violation = check_job(plan_size(found.width, found.height, size), found.width, found.height, found.alpha, fmt,
                          settings, model)
    if violation:
        raise Refusal(violation.message)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from shared.settings import Settings
    from worker.engine.registry import EngineRegistry, UnknownModel
    from worker.render import render

    denoise = parse_denoise(args.denoise)
    size = size_request(args)
    jobs, single = plan(args.paths, args.format)
    overrides = {"tile_size": args.tile} if args.tile else {}
    settings = Settings.from_env(**overrides)
    engines = EngineRegistry(settings)
    model = args.model or settings.default_model
    if model not in engines.catalog:
        print(f"upscaler upscale: no model named {model!r}; known: {', '.join(sorted(engines.catalog))}",
              file=sys.stderr)
        return 2
    if denoise is not None and not engines.catalog[model].accepts_denoise:  # as the API refuses it
        takes = sorted(name for name, info in engines.catalog.items() if info.accepts_denoise)
        print(f"upscaler upscale: model {model!r} takes no --denoise; use 'auto' or one of {', '.join(takes)}",
              file=sys.stderr)
        return 2
    if not args.overwrite:
        present = [job for job in jobs if job[1].exists()]
        if single and present:
            print(f"upscaler upscale: {jobs[0][1]} exists; --overwrite replaces it", file=sys.stderr)
            return 1
        for source, destination, _ in present:  # an interrupted run goes on where it stopped, as submit does
            print(f"skip {source}: {destination} exists (--overwrite replaces it)")
        done = {destination for _, destination, _ in present}
        jobs = [job for job in jobs if job[1] not in done]  # a set: a rerun of 10,000 files compared 10^8 tuples
    bar = tqdm(total=len(jobs), unit="file", desc=f"{model} {size.describe()}",
               bar_format="{l_bar}{bar}| {n:.1f}/{total} [{elapsed}<{remaining}]")
    failed = 0
    for index, (source, destination, fmt) in enumerate(jobs):

        def progress(done: int, total: int, base: int = index) -> None:
            bar.n = base + done / total
            bar.refresh()

        try:
            check_file(source, size, fmt, engines.catalog[model], settings)
            destination.parent.mkdir(parents=True, exist_ok=True)
            # written beside it, then renamed: a run stopped mid-file (Ctrl-C, a crash) leaves no partial result,
            # which a later run would take for done and skip
            partial = destination.with_name(f".{destination.name}.part")
            try:
                result = render(source, partial, engines, model, size, fmt, args.quality, progress,
                                denoise=denoise, band_pixels=settings.band_output_pixels)  # as the worker does
                partial.replace(destination)
            finally:
                partial.unlink(missing_ok=True)
        except (OSError, ValueError, Refusal, UnknownModel) as exc:  # ValueError: rejected or unreadable images
            failed += 1
            tqdm.write(f"error: {source}: {exc}", file=sys.stderr)
            continue
        except MemoryError:
            failed += 1
            tqdm.write(f"error: {source}: not enough memory for this image on this machine", file=sys.stderr)
            continue
        finally:
            bar.n = index + 1
            bar.refresh()
        ran = result.selection
        strength = f" strength {ran.strength:.2f}" if ran.strength is not None else ""
        tqdm.write(f"wrote {destination} ({result.width}x{result.height}) with {ran.model}{strength} "
                   f"({ran.reason}); inference {result.timings['inference_s']:.2f}s")
    bar.close()
    if failed:
        print(f"{failed} of {len(jobs)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0
