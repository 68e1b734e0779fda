"""``upscaler upscale``: upscale files locally through the worker's own path (no API, no queue).

``upscaler upscale IN OUT`` does one file; ``upscaler upscale DIR_OR_FILES... OUTDIR`` does many with the
model loaded once, one progress bar over all of them, and ``OUTDIR/<input stem>.<ext>`` for each.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cli.arguments import UsageError, add_size_options, denoise, positive_int, quality
from cli.files import (
    expand,
    output_format_for,
    progress_bar,
    refuse_overwriting_inputs,
    result_names,
    writable_folders,
)
from cli.records import Records
from shared.errors import Refusal
from shared.formats import INPUT_SUFFIXES, sniff
from shared.limits import EXTENSIONS, OUTPUT_FORMATS, SUFFIX_FORMATS, check_job
from shared.sizing import SizeError, SizeRequest, requested_size
from shared.sizing import plan as plan_size

if TYPE_CHECKING:
    from shared.catalog import ModelInfo
    from shared.settings import Settings
    from worker.engine.base import ProgressFn
    from worker.engine.registry import EngineRegistry
    from worker.render import Rendered


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("upscale", help="upscale image files locally (same engine, route and tiling as the worker)",
                       description="IN OUT for one file, or DIR_OR_FILES... OUTDIR for many")
    p.add_argument("paths", type=Path, nargs="+", metavar="PATH",
                   help="input file(s) or folder(s), then the output file (one input) or output folder")
    add_size_options(p, fit_default="contain")
    p.add_argument("--model", default=None, help="model name (default: $UPSCALER_DEFAULT_MODEL, 'auto'); 'bicubic' too")
    p.add_argument("--denoise", type=denoise, default=None,
                   help="restoration strength 0..1, or 'auto' (the default) to measure it from each file (models with "
                        "denoise)")
    p.add_argument("--tile", type=positive_int, default=None,
                   help="tile side in input pixels (default: $UPSCALER_TILE_SIZE)")
    p.add_argument("--format", choices=sorted(OUTPUT_FORMATS), default=None,
                   help="output format (default: from the output file's extension; png for a folder)")
    p.add_argument("--quality", type=quality, default=None, help="JPEG/WebP/AVIF quality 1..100 (default 92 / 90 / 75)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace results that exist (else a folder's are skipped, a named output file refused)")
    p.set_defaults(func=run)


def size_request(args: argparse.Namespace) -> SizeRequest:
    """The size the options ask for, read as the API reads a job's fields."""
    try:
        return requested_size(args.scale, args.width, args.height, args.fit, print_width=args.print_width,
                              print_height=args.print_height, print_unit=args.print_unit or "in", dpi=args.dpi)
    except SizeError as exc:
        raise UsageError(str(exc)) from None


def plan(paths: list[Path], explicit_format: str | None) -> tuple[list[tuple[Path, Path, str]], bool]:
    """(input, output, format) for each file, and whether this is the single-file form (one input that is not a
    folder, an output named like an image) rather than the many-files-into-a-folder form."""
    *inputs, target = paths
    if not inputs:
        raise UsageError("give input file(s) or folder(s) and then an output file or folder")
    named_like_an_image = target.suffix.lower() in INPUT_SUFFIXES | set(SUFFIX_FORMATS)
    single = len(inputs) == 1 and not inputs[0].is_dir() and not target.is_dir() and named_like_an_image
    if single:
        refuse_overwriting_inputs({inputs[0]: target})
        return [(inputs[0], target, output_format_for(target, explicit_format))], True
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target} is a file; name an output folder for these inputs")
    if not target.exists() and named_like_an_image:  # it was made as a folder named big.jpg, without a word
        raise UsageError(f"{target} is named like an image file, but these inputs go into an output folder: name "
                         f"a folder (e.g. {target.with_suffix('')}), or give one input for one output file")
    fmt = explicit_format or "png"
    files = expand(inputs, results=target)
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
    from worker.scratch import remove_orphaned_beside

    size = size_request(args)
    jobs, single = plan(args.paths, args.format)
    overrides = {"tile_size": args.tile} if args.tile is not None else {}
    settings = Settings.from_env(secret=False, **overrides)
    engines = EngineRegistry(settings)
    model = args.model or settings.default_model
    if model not in engines.catalog:
        raise UsageError(f"no model named {model!r}; known: {', '.join(sorted(engines.catalog))}")
    if args.denoise is not None and not engines.catalog[model].accepts_denoise:  # as the API refuses it
        takes = sorted(name for name, info in engines.catalog.items() if info.accepts_denoise)
        raise UsageError(f"model {model!r} takes no --denoise; use 'auto' or one of {', '.join(takes)}")
    if single and not args.overwrite and jobs[0][1].exists():
        print(f"upscaler upscale: {jobs[0][1]} exists; --overwrite replaces it", file=sys.stderr)
        return 1
    # into a folder: a result there is skipped only if this file made it so (an interrupted run goes on, as
    # submit does); the record says so, a single named output needs none
    records = None if single else Records(result_options(args, model, jobs[0][2]))
    refused = 0
    if records is not None:
        todo, refused = records.sort_out({source: destination for source, destination, _ in jobs}, args.overwrite)
        going = set(todo)  # a set: a rerun of 10,000 files compared 10^8 tuples
        jobs = [job for job in jobs if job[0] in going]
    writable_folders(destination for _, destination, _ in jobs)
    for folder in {destination.parent for _, destination, _ in jobs}:  # what a killed run left (SIGKILL, OOM)
        remove_orphaned_beside(folder)
    bar = progress_bar(total=len(jobs), unit="file", desc=f"{model} {size.describe()}",
                       bar_format="{l_bar}{bar}| {n:.1f}/{total} [{elapsed}<{remaining}]")
    failed = 0
    for index, (source, destination, fmt) in enumerate(jobs):

        def progress(done: int, total: int, base: int = index) -> None:
            bar.n = base + done / total
            bar.refresh()

        try:
            result = upscale_one(source, destination, fmt, engines, model, size, args, settings, progress)
            if records is not None:
                records.record(source, destination)
        except (OSError, ValueError, Refusal, UnknownModel) as exc:  # ValueError: rejected or unreadable images
            failed += 1
            tqdm.write(f"error: {source}: {exc}", file=sys.stderr)
        except MemoryError:
            failed += 1
            tqdm.write(f"error: {source}: not enough memory for this image on this machine", file=sys.stderr)
        except KeyboardInterrupt:  # Ctrl-C or a signal: the bar stays where it was (it showed 100 %), and says so
            bar.close()
            print(f"stopped at {source}; {index - failed} of {len(jobs)} file(s) written, {failed} failed (run it "
                  "again to go on: results already there are skipped)", file=sys.stderr)
            raise
        else:
            ran = result.selection
            strength = f" strength {ran.strength:.2f}" if ran.strength is not None else ""
            tqdm.write(f"wrote {destination} ({result.width}x{result.height}) with {ran.model}{strength} "
                       f"({ran.reason}); inference {result.timings['inference_s']:.2f}s")
        bar.n = index + 1
        bar.refresh()
    bar.close()
    if failed or refused:
        print(f"{failed + refused} of {len(jobs) + refused} file(s) failed", file=sys.stderr)
    return 1 if failed or refused else 0


def result_options(args: argparse.Namespace, model: str, fmt: str) -> dict[str, object]:
    """The options that make a result what it is, as its record keeps them (not --tile: tiles stitch to the same
    image; --fit only where both sides are given, as only there it counts)."""
    both = (args.width and args.height) or (args.print_width and args.print_height)
    return {"scale": args.scale, "width": args.width, "height": args.height, "fit": args.fit if both else None,
            "dpi": args.dpi, "print_width": args.print_width, "print_height": args.print_height,
            "print_unit": args.print_unit, "model": model, "denoise": args.denoise, "format": fmt,
            "quality": args.quality}


def upscale_one(source: Path, destination: Path, fmt: str, engines: EngineRegistry, model: str, size: SizeRequest,
                args: argparse.Namespace, settings: Settings, progress: ProgressFn) -> Rendered:
    """Check one file as the API would, then render it beside its destination and rename it there: a run stopped
    mid-file (Ctrl-C, a signal, a crash) leaves no partial result, which a later run would take for done and
    skip."""
    from worker.render import render

    check_file(source, size, fmt, engines.catalog[model], settings)
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.part")
    try:
        result = render(source, partial, engines, model, size, fmt, args.quality, progress,
                        denoise=args.denoise, band_pixels=settings.band_output_pixels, dpi=args.dpi)  # as a job
        partial.replace(destination)
    finally:
        partial.unlink(missing_ok=True)
    return result
