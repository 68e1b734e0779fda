"""Entry point of the ``upscaler`` console script (``python -m cli`` works too).

Errors a user can act on (a missing file, the API down, a refused request) print one line and exit 1;
``--debug`` shows the traceback instead. A command line that cannot mean anything (argparse's errors, a
``UsageError``) exits 2. A run stopped by Ctrl-C, or by SIGTERM or SIGHUP in the commands that write files, cleans
up and exits 128 + the signal. The commands that report a line per file (``upscale``, ``submit``, ``dev``) write
each line out as it ends, into a log or a pipe too. Output whose reader has gone (``upscaler jobs list | head -1``)
ends the command as SIGPIPE ends a shell tool: quietly, exit 141 (128 + SIGPIPE).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import sys
from importlib.metadata import PackageNotFoundError, version

from cli import dev, evaluate, jobs, keys, services, submit, train, upscale
from cli.arguments import UsageError
from cli.interrupts import exit_status, signals_as_interrupts

# The commands that write files: a signal must run their cleanup (partial results, band files, temporary folders).
# Not the services, which hand signals to gunicorn and Celery, nor ``dev``, which stops what it started itself.
WRITING_COMMANDS = frozenset({"upscale", "submit", "jobs", "export", "eval"})
# The commands that report as they go, a line per file or per stage: into a log file, a pipe or a CI runner, standard
# output is block-buffered, and their lines came all at once at exit, after the summary on stderr
REPORTING_COMMANDS = frozenset({"upscale", "submit", "dev"})


def _version() -> str:
    try:
        return version("upscaler")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="upscaler", description="AI image upscaling job platform")
    parser.add_argument("--version", action="version", version=f"upscaler {_version()}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (services, dev, upscale, submit, jobs, train, evaluate, keys):
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in REPORTING_COMMANDS:
        _line_by_line()
    stopping = signals_as_interrupts() if args.command in WRITING_COMMANDS else contextlib.nullcontext()
    try:
        with stopping:
            status = int(args.func(args) or 0)
        sys.stdout.flush()  # a reader that left is found here, not in a flush at exit ("Exception ignored ...")
        return status
    except KeyboardInterrupt as stopped:
        return exit_status(stopped)
    except BrokenPipeError:
        return _reader_gone()
    except UsageError as exc:
        print(f"upscaler {args.command}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if args.debug or not _user_facing(exc):
            raise
        print(f"upscaler {args.command}: {_in_words(exc)}", file=sys.stderr)
        return 1


def _line_by_line() -> None:
    """Standard output written out at each line's end, wherever it goes (a terminal already is)."""
    if isinstance(sys.stdout, io.TextIOWrapper):  # not a stream put in its place (contextlib.redirect_stdout)
        sys.stdout.reconfigure(line_buffering=True)


def _reader_gone() -> int:
    """The exit of a command whose output's reader has gone: Python ignores SIGPIPE, so a write raised
    BrokenPipeError, which was said as an error (exit 1), or, at exit, as "Exception ignored" (exit 120). Standard
    output is pointed at /dev/null so the flush at exit has nowhere to fail (the Python docs' "Note on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE


def _user_facing(exc: Exception) -> bool:
    """Errors that say what is wrong in words (the SDK's, files, settings, refusals, a database that is away or
    not migrated, Alembic's), not bugs."""
    from alembic.util import CommandError
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from shared.errors import Refusal
    from shared.settings import SettingsError

    try:
        from upscaler_client import UpscalerError
    except ImportError:  # the SDK is optional for server-only installs
        UpscalerError = ()
    return isinstance(exc, (OSError, SettingsError, Refusal, UpscalerError, OperationalError, ProgrammingError,
                            CommandError))


def _in_words(exc: Exception) -> str:
    """The error's message; a database error's is the driver's first line and what to check (SQLAlchemy's own
    holds the statement and a link over many lines)."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError):
        first = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
        return (f"database error: {first} (is UPSCALER_DATABASE_URL reachable, and migrated with "
                "'upscaler migrate'?)")
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
