"""``upscaler jobs list|get|cancel|delete|download|usage``: look after jobs on a running API (through the Python
SDK)."""

from __future__ import annotations

import argparse
import itertools
import json

from cli.arguments import positive_int
from shared.errors import Refusal
from shared.limits import EXTENSIONS, SUFFIX_FORMATS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("jobs", help="list, show, cancel, delete or download jobs of a running API, or see the key's "
                                    "limits and use")
    where = argparse.ArgumentParser(add_help=False)  # before or after the action, as `submit` takes them anywhere
    for parser, default in ((p, None), (where, argparse.SUPPRESS)):
        parser.add_argument("--api", default=default,
                            help="API base URL (default: $UPSCALER_API_URL or http://127.0.0.1:8000)")
        parser.add_argument("--api-key", default=default, help="default: $UPSCALER_API_KEY")
    actions = p.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", parents=[where], help="newest first, one line each")
    listing.add_argument("--status", default=None)
    listing.add_argument("--limit", type=positive_int, default=20)
    listing.set_defaults(func=run_list)
    get = actions.add_parser("get", parents=[where], help="the job as JSON")
    get.add_argument("job_id")
    get.set_defaults(func=run_get)
    cancel = actions.add_parser("cancel", parents=[where], help="cancel a queued or running job")
    cancel.add_argument("job_id")
    cancel.set_defaults(func=run_cancel)
    remove = actions.add_parser("delete", parents=[where],
                                help="delete an ended job's input and result now (its record stays)")
    remove.add_argument("job_id")
    remove.set_defaults(func=run_delete)
    download = actions.add_parser("download", parents=[where], help="save a succeeded job's result")
    download.add_argument("job_id")
    download.add_argument("path", help="a file, or a folder (the result keeps its own name there): an existing one, or "
                                       "a new one named with a trailing /")
    download.add_argument("--overwrite", action="store_true", help="replace a file that is there")
    download.set_defaults(func=run_download)
    usage = actions.add_parser("usage", parents=[where],
                               help="the key's limits and what it uses of them now (active jobs, megapixels today)")
    usage.set_defaults(func=run_usage)


def _client(args: argparse.Namespace):
    from upscaler_client import Client

    return Client(args.api, args.api_key)


def run_list(args: argparse.Namespace) -> int:
    for job in itertools.islice(_client(args).jobs.list(status=args.status), args.limit):
        size = f"{job.output.width}x{job.output.height}" if job.output.width else "-"
        print(f"{job.id}  {job.status:9}  {job.progress:4.0%}  {job.model:16}  {size:>13}  "
              f"{job.input.filename or job.input.url or ''}")
    return 0


def run_get(args: argparse.Namespace) -> int:
    print(json.dumps(_client(args).jobs.get(args.job_id).raw, indent=2))
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    job = _client(args).jobs.cancel(args.job_id)
    print(f"{job.id} {job.status}")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    job = _client(args).jobs.delete(args.job_id)
    print(f"{job.id} {job.status}, images deleted {job.raw['expired_at']}")
    return 0


def run_usage(args: argparse.Namespace) -> int:
    usage = _client(args).usage()

    def limit(value: float | None) -> str:
        return "unlimited" if value is None else f"{value:g}"

    used = "unknown (the API's Redis is unreachable)" if usage.megapixels_used_today is None \
        else f"{usage.megapixels_used_today:.2f}"
    print(f"tenant       {usage.tenant}")
    print(f"requests     {limit(usage.requests_per_minute)} a minute")
    print(f"active jobs  {usage.queued} queued, {usage.running} running, limit {limit(usage.max_active_jobs)}")
    print(f"megapixels   {used} used today of {limit(usage.daily_megapixels)}; the day ends "
          f"{usage.resets_at:%Y-%m-%d %H:%M} UTC")
    return 0


def run_download(args: argparse.Namespace) -> int:
    """Save the result; a file that is there (the input itself, say) is replaced only with ``--overwrite``, and a
    name whose suffix says another format than the result's is refused, as ``upscale`` and ``submit`` do."""
    from upscaler_client.client import result_path

    client = _client(args)
    job = client.jobs.get(args.job_id)
    target, made = result_path(job, args.path), job.output.format
    implied = SUFFIX_FORMATS.get(target.suffix.lower())
    if implied and made and implied != made:
        raise Refusal(f"{target} names a {implied} file but the result is {made}: name it "
                      f"{target.stem}.{EXTENSIONS.get(made, made)}")
    if target.exists() and not args.overwrite:
        raise Refusal(f"{target} exists; --overwrite replaces it")
    print(client.jobs.download(args.job_id, target))
    return 0
