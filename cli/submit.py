"""``upscaler submit PATH...``: send images to a running API (through the Python SDK), optionally wait for them,
download the results, and skip what is already done (resumable).

Files, folders (their images) and globs; ``UPSCALER_API_URL`` and ``UPSCALER_API_KEY`` say where and who. Exit 0
only if every job succeeded (or, without ``--wait``, was accepted).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cli.arguments import UsageError, add_size_options, denoise, positive_int, quality
from cli.files import (
    expand,
    output_format_for,
    progress_bar,
    refuse_overwriting_inputs,
    result_names,
    writable_folders,
)
from cli.interrupts import end_at_once
from cli.records import Records
from shared.limits import EXTENSIONS, OUTPUT_FORMATS
from shared.sizing import size_conflict


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="send images to a running API; --wait downloads the results")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders of images, or globs")
    p.add_argument("--api", default=None, help="API base URL (default: $UPSCALER_API_URL or http://127.0.0.1:8000)")
    p.add_argument("--api-key", default=None, help="default: $UPSCALER_API_KEY")
    add_size_options(p, fit_default=None)  # None: the server's default
    p.add_argument("--format", choices=sorted(OUTPUT_FORMATS), default=None,
                   help="default: --output's suffix, else png")
    p.add_argument("--quality", type=quality, default=None, help="JPEG/WebP/AVIF quality 1..100 (default 92 / 90 / 75)")
    p.add_argument("--model", default=None, help="default: the server's ('auto': a network chosen per input)")
    # checked here as upscale and the API check it: unchecked, a --denoise 2 was sent with every file, refused 422
    # file by file, exit 1
    p.add_argument("--denoise", type=denoise, default=None,
                   help="restoration strength 0..1, or 'auto' (the default) to measure it from each file")
    p.add_argument("--webhook-url", default=None)
    p.add_argument("--wait", action="store_true", help="wait for every job, with progress, and download results")
    p.add_argument("--output-dir", type=Path, default=None,
                   help="with --wait: where results go (<stem>.<ext>; default: here)")
    p.add_argument("--concurrency", type=positive_int, default=4, help="jobs submitted and watched at once")
    p.add_argument("--output", type=Path, default=None, help="with one PATH and --wait: the result's file name")
    p.add_argument("--overwrite", action="store_true",
                   help="with --wait: replace results that exist (else one this file made with these options is "
                        "skipped, one of another file or other options refused)")
    p.set_defaults(func=run)


def request_key(path: Path, options: dict) -> str:
    """An Idempotency-Key from the file's bytes and the options: a run stopped or cut off (the API restarted while
    it waited) and run again finds the jobs it made, within UPSCALER_IDEMPOTENCY_TTL, instead of charging the
    tenant for each image twice."""
    digest = hashlib.sha256(path.read_bytes())
    digest.update(json.dumps(options, sort_keys=True, default=str).encode())
    return f"submit-{digest.hexdigest()[:48]}"


MAX_RETRIES_FOUND = 20  # retries of one file followed before giving up (each one failed or was canceled)
# How long --wait watches an API that answers no poll before the run stops (its jobs go on on the server); a
# restart or a deploy takes far less
API_AWAY_SECONDS = 120


def create(client, path: Path, options: dict):
    """The job for ``path`` with ``options``: the one an earlier run made, unless that one failed or was canceled;
    then its retry, keyed after the failed job, so a later run finds that retry too (sent with no key, each run
    after a failure made yet another job, and charged it)."""
    key = request_key(path, options)
    for _ in range(MAX_RETRIES_FOUND):
        job = client.jobs.create(path, **options, idempotency_key=key)
        if job.status not in ("failed", "canceled"):
            return job
        key = f"{key[:150]}-after-{job.id}"
    return client.jobs.create(path, **options, idempotency_key=key)


class Stopped(Exception):
    """Ctrl-C: this file's watch ends (its job keeps running on the server)."""


def create_when_a_slot_frees(client, path: Path, options: dict, stop: threading.Event,
                             said: threading.Lock | None = None):
    """``create``, waiting while the key is at its active-job limit: with --wait this run's own jobs free the
    slots (a key allowed fewer jobs than --concurrency turned the other files into errors after 30 s). The wait is
    said on stderr, once per run (``said``, the run's, is taken by the file that says it): a limit held by jobs
    from elsewhere, queued with no worker, kept a run waiting without a word."""
    from tqdm import tqdm
    from upscaler_client import RateLimited

    said = said or threading.Lock()
    while True:
        try:
            return create(client, path, options)
        except RateLimited as exc:
            if exc.code != "too_many_active_jobs":
                raise
            if said.acquire(blocking=False):  # never released: the first file to wait says it, alone
                tqdm.write(f"upscaler submit: waiting for a free job slot ({exc.detail})", file=sys.stderr)
            if stop.wait(exc.retry_after or 10):
                raise Stopped from None


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm
    from upscaler_client import AuthenticationError, Client, JobFailed, Timeout, UpscalerError
    from upscaler_client import ConnectionError as Unreachable

    if (args.output or args.output_dir or args.overwrite) and not args.wait:
        raise UsageError("--output, --output-dir and --overwrite are about the results --wait downloads; add --wait")
    conflict = size_conflict(args.scale, args.width, args.height, args.print_width, args.print_height, args.dpi)
    if conflict:  # else every file was sent, refused 422 one by one, and the run exited 1
        raise UsageError(conflict)
    # results already downloaded into the output folder are not sent again as inputs
    results = (args.output_dir or Path(".")) if args.wait and not args.output else None
    files = expand([Path(p) for p in args.paths], results)
    if args.output and len(files) > 1:
        raise UsageError(f"--output names one result, and {len(files)} images were given; use --output-dir")
    fmt = output_format_for(args.output, args.format) if args.output else args.format or "png"
    client = Client(args.api, args.api_key)
    options = {"scale": args.scale, "width": args.width, "height": args.height, "fit": args.fit, "dpi": args.dpi,
               "print_width": args.print_width, "print_height": args.print_height, "print_unit": args.print_unit,
               "format": fmt, "quality": args.quality, "model": args.model, "denoise": args.denoise,
               "webhook_url": args.webhook_url}
    if not args.wait:
        failed = 0
        for path in files:
            try:
                job = create(client, path, options)
            except (AuthenticationError, Unreachable) as exc:  # the same for every file: stop at the first
                print(f"upscaler submit: {exc}", file=sys.stderr)
                return 1
            except (UpscalerError, OSError) as exc:
                failed += 1
                print(f"error: {path}: {exc}", file=sys.stderr)
                continue
            # outside the try: a reader that left (BrokenPipeError, an OSError) is no file's error; it ends the run
            print(f"{path}\t{job.id}\t{job.status}")
        return 1 if failed else 0

    if args.output:
        targets = {files[0]: args.output}
        refuse_overwriting_inputs(targets)
    else:  # result_names refuses a target that is an input
        targets = result_names(files, args.output_dir or Path("."), EXTENSIONS[fmt])
    # a result there is skipped only if this file made it with these options (the webhook shapes no result)
    records = Records({name: value for name, value in options.items() if name != "webhook_url"})
    todo, refused = records.sort_out(targets, args.overwrite)
    writable_folders(targets[path] for path in todo)  # before any upload: a job done for nothing is charged
    overall = progress_bar(total=len(todo), desc="all", unit="job", position=0, dynamic_ncols=True)
    stop, reader_gone, slot_wait_said = threading.Event(), threading.Event(), threading.Lock()
    running: dict[Path, str] = {}

    away_since: list[float] = []  # when the API stopped answering polls (empty: it answers)

    def watch(bar, job) -> None:
        away_since.clear()
        if stop.is_set():
            raise Stopped
        bar.n = round(job.progress * 100)
        bar.refresh()

    def unless_stopped(outage: Exception) -> None:
        """While the API is away a watch hears no progress: a run sat silent for the wait's hour, then counted its
        files as failed. It stops once another file's submit could not connect, or no poll was answered for
        ``API_AWAY_SECONDS``."""
        if not away_since:
            away_since.append(time.monotonic())
        if time.monotonic() - away_since[0] > API_AWAY_SECONDS and not stop.is_set():
            stop.set()
            tqdm.write(f"upscaler submit: the API has answered no poll for {API_AWAY_SECONDS} s ({outage})",
                       file=sys.stderr)
        if stop.is_set():
            raise Stopped

    def one(index_path: tuple[int, Path]) -> str:
        index, path = index_path
        if stop.is_set():
            return NOT_DONE
        bar = progress_bar(total=100, desc=path.name[:24], unit="%", position=1 + index % max(args.concurrency, 1),
                           leave=False, dynamic_ncols=True)
        try:
            job = create_when_a_slot_frees(client, path, options, stop, slot_wait_said)
            running[path] = job.id
            done = job.wait(on_progress=lambda j: watch(bar, j), on_unavailable=unless_stopped)
            if stop.is_set():
                raise Stopped
            try:
                done.download(targets[path])
            except (UpscalerError, OSError) as exc:  # the job succeeded: not a failed job, nor charged again
                running.pop(path)
                tqdm.write(f"error: {path}: download failed (job {done.id} succeeded: run the same `upscaler "
                           f"submit` again to download it): {exc}", file=sys.stderr)
                return UNSAVED
            running.pop(path)
            records.record(path, targets[path])
            tqdm.write(f"done {path} -> {targets[path]} ({done.output.width}x{done.output.height})")
            return DONE
        except Stopped:
            return NOT_DONE
        except (AuthenticationError, Unreachable) as exc:  # the same for every file: stop the run
            stop.set()
            tqdm.write(f"upscaler submit: {exc}", file=sys.stderr)
            return NOT_DONE
        except Timeout as exc:  # waiting ran out: the job goes on on the server, not failed
            tqdm.write(f"not finished: {path}: {exc}", file=sys.stderr)
            return NOT_DONE
        except BrokenPipeError:  # the reader of the output left: no file's error; the run ends as main()'s do
            stop.set()
            reader_gone.set()
            return NOT_DONE
        except (UpscalerError, OSError) as exc:
            job_id = running.pop(path, None)
            named = job_id and not isinstance(exc, JobFailed)  # a failed job's message names it already
            tqdm.write(f"error: {path}: {exc}" + (f" (job {job_id})" if named else ""), file=sys.stderr)
            return FAILED
        finally:
            bar.close()
            overall.update(1)

    pool = ThreadPoolExecutor(max_workers=max(args.concurrency, 1))
    try:
        results = list(pool.map(one, enumerate(todo)))
    except KeyboardInterrupt as stopped:  # Ctrl-C, SIGTERM or SIGHUP
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        overall.close()
        for target in targets.values():  # a download cut short leaves nothing beside its target
            target.with_name(target.name + ".part").unlink(missing_ok=True)
        print(f"\nstopped; {_left_on_server(running)}", file=sys.stderr)
        end_at_once(stopped)  # without joining watches that poll for an hour or a download under way
    pool.shutdown()
    overall.close()
    if reader_gone.is_set():
        raise BrokenPipeError
    failed, not_done, unsaved = results.count(FAILED), results.count(NOT_DONE), results.count(UNSAVED)
    if refused:
        print(f"{refused} of {len(files)} file(s) not sent: their results' names hold what another input or other "
              "options made", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(todo)} job(s) failed", file=sys.stderr)
    if unsaved:
        print(f"{unsaved} of {len(todo)} result(s) not downloaded (their jobs succeeded)", file=sys.stderr)
    if not_done:
        print(f"{not_done} of {len(todo)} file(s) not finished: {_left_on_server(running)}", file=sys.stderr)
    return 1 if refused or failed or unsaved or not_done else 0


# a file's outcome in a --wait run
DONE, FAILED, UNSAVED, NOT_DONE = "done", "failed", "not downloaded", "not done"


def _left_on_server(running: dict[Path, str]) -> str:
    """The jobs still running that a rerun picks up; with none, no advice to rerun for them (after a wrong key it
    said "jobs left on the server: none (run the same `upscaler submit` again to pick them up ...)")."""
    if not running:
        return "no job of this run is left running on the server"
    left = ", ".join(f"{path} ({job_id})" for path, job_id in running.items())
    return (f"jobs left on the server: {left} (run the same `upscaler submit` again to pick them up and download "
            "their results; nothing is submitted twice)")
