"""``upscaler api``, ``worker``, ``beat`` and ``migrate``: the long-running processes and migrations."""

from __future__ import annotations

import argparse
import os
import sys

from cli.arguments import port_or_off, positive_float, positive_int, tcp_port
from shared.limits import MAX_WAIT_SECONDS
from shared.queue import INFERENCE_QUEUE, QUEUES

# gunicorn's default access line logs the request line with its query string, which for a signed file link is
# the credential itself; %(U)s is the path alone.
ACCESS_LOG_FORMAT = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s" %({x-request-id}o)s'
# On shutdown gunicorn lets requests in flight finish for this long: the longest ``Prefer: wait`` and a slow
# upload's tail. It was 30 s while a request may wait 60: a rollout cut such a request off after its job was made,
# and a client without an Idempotency-Key retried into a second job. Grace periods in deploy/ exceed it.
GRACEFUL_SECONDS = MAX_WAIT_SECONDS + 15


def queue_names(text: str) -> str:
    """``--queues``: known names only (a typo had a worker idle on a queue nobody publishes to)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in QUEUES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown queue {', '.join(unknown) or '(none given)'!s}; "
                                         f"known: {', '.join(QUEUES)}")
    return ",".join(names)


def add_parser(sub: argparse._SubParsersAction) -> None:
    api = sub.add_parser("api", help="serve the HTTP API with gunicorn (production WSGI server)")
    api.add_argument("--host", default=None, help="default: $UPSCALER_API_HOST or 127.0.0.1")
    api.add_argument("--port", type=tcp_port, default=None, help="default: $UPSCALER_API_PORT or 8000")
    api.add_argument("--workers", type=positive_int, default=None,
                     help="gunicorn processes (default: $UPSCALER_API_WORKERS, else cores + 1, the best measured "
                          "on 2 cores)")
    api.add_argument("--threads", type=positive_int, default=None,
                     help="threads per process (default $UPSCALER_API_THREADS)")
    api.set_defaults(func=run_api)

    worker = sub.add_parser("worker", help="run a Celery worker")
    worker.add_argument("--queues", type=queue_names, default=",".join(QUEUES),
                        help=f"comma-separated queues to consume, of {', '.join(QUEUES)}")
    worker.add_argument("--concurrency", type=positive_int, default=None,
                        help="processes (default $UPSCALER_WORKER_CONCURRENCY)")
    worker.add_argument("--beat", action="store_true", help="also run the periodic sweeper in this process")
    worker.add_argument("--name", default="celery@%h",
                        help="Celery node name, %%h = this host's name (default celery@%%h, what the probes ping): "
                             "give each worker on one host its own, or they answer as one node")
    worker.add_argument("--metrics-port", type=port_or_off, default=None,
                        help="serve this worker's Prometheus metrics here, 0 for none (default "
                             "$UPSCALER_WORKER_METRICS_PORT): each worker on one host needs its own")
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(func=run_worker)

    health = sub.add_parser("worker-health", help="exit 0 if this host's workers have live pool processes "
                                                  "(the liveness probe)")
    health.add_argument("--pid", type=int, default=None, help="check this worker's main process only")
    health.set_defaults(func=run_worker_health)

    beat = sub.add_parser("beat", help="run the Celery beat scheduler (the periodic sweeper); one per deployment")
    beat.add_argument("--loglevel", default="INFO")
    beat.set_defaults(func=run_beat)

    migrate = sub.add_parser("migrate", help="apply database migrations (Alembic upgrade head)")
    migrate.set_defaults(func=run_migrate)
    wait = sub.add_parser("wait-for-schema", help="wait until the database is migrated to this release's schema "
                                                  "or newer, saying why meanwhile (Kubernetes init containers)")
    wait.add_argument("--interval", type=positive_float, default=10.0, help="seconds between checks (default 10)")
    wait.set_defaults(func=run_wait_for_schema)


def _multiprocess_metrics_dir(kind: str) -> None:
    """A fresh folder where forked processes share Prometheus counters (must be set before they start); those
    of processes that are gone are removed by ``_exec`` (one stayed behind per launch). Always this launch's own,
    even where ``PROMETHEUS_MULTIPROC_DIR`` is set already (prometheus_client's guide has operators set it): that
    folder was never emptied, so a restarted API served the previous run's counts, and an API and a worker given
    the same one each served the other's series."""
    import shutil

    from worker.scratch import scratch_name

    folder = scratch_name(f"metrics-{kind}")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder


def _say_cautions(settings) -> None:
    """Each of the settings' cautions on stderr, once, before the process becomes gunicorn or Celery; under
    ``UPSCALER_LOG_FORMAT=json`` as a JSON line of level warning like every other (a plain line was kept as text
    by log pipelines, out of reach of a query or an alert on warnings)."""
    import logging

    from shared.logs import JsonFormatter

    for caution in settings.cautions():
        if settings.log_format == "json":
            record = logging.LogRecord(__name__, logging.WARNING, __file__, 0, caution, None, None)
            print(JsonFormatter().format(record), file=sys.stderr, flush=True)
        else:
            print(f"warning: {caution}", file=sys.stderr, flush=True)


def _exec(argv: list[str]) -> None:
    """Become ``argv`` (the launched process keeps this pid, so its scratch folders are named alike), once the
    metrics folders, beat schedules and job scratch that processes now gone left in the temporary folder are
    removed: one scan per launch."""
    from worker.scratch import remove_orphaned

    remove_orphaned()
    os.execv(sys.executable, argv)


def run_api(args: argparse.Namespace) -> int:
    from shared.catalog import catalog_for
    from shared.settings import Settings

    settings = Settings.from_env()
    catalog_for(settings)  # a missing default model is one line here, not a traceback per gunicorn process
    _say_cautions(settings)
    bind = f"{args.host or settings.api_host}:{args.port or settings.api_port}"
    workers = args.workers or settings.api_workers or (os.cpu_count() or 1) + 1
    threads = args.threads or settings.api_threads
    # the app caps requests waiting on a job (Prefer: wait) at half its threads, read from the setting: a --threads
    # that differed from UPSCALER_API_THREADS let waits take every thread, /healthz's too
    os.environ["UPSCALER_API_THREADS"] = str(threads)
    argv = [sys.executable, "-m", "gunicorn", "api:create_app()", "--bind", bind, "--workers", str(workers),
            "--threads", str(threads), "--worker-class", "cli.gunicorn_worker.ProblemWorker", "--access-logfile", "-",
            "--access-logformat", ACCESS_LOG_FORMAT, "--logger-class", "cli.gunicorn_logs.Logger",
            "--graceful-timeout", str(GRACEFUL_SECONDS), "--timeout", "120",
            # no control socket: gunicorn's one path under $HOME, shared by every API on the host (one removed
            # another's on exit) and unwritable in a read-only pod, for a tool (gunicornc) nothing here uses
            "--no-control-socket"]
    _multiprocess_metrics_dir("api")
    _exec(argv)
    return 0


def _celery(settings) -> list[str]:
    """The Celery command line's start; quiet (no banner) where every line must be JSON."""
    return [sys.executable, "-m", "celery", "-A", "worker.celery_app", *(["--quiet"] if settings.log_format == "json"
                                                                        else [])]


def _beat_schedule() -> list[str]:
    """Beat's state file in the temporary folder, not the working directory (which may be read-only, or a
    checkout): the sweep runs on an interval, so nothing in it needs to outlive the process (those of beats that
    are gone are removed by ``_exec``)."""
    from worker.scratch import scratch_name

    return ["--schedule", scratch_name("beat")]


def run_worker(args: argparse.Namespace) -> int:
    from shared.settings import Settings

    settings = Settings.from_env()  # here, not in Celery's loader: a bad setting is one line, not a traceback
    if INFERENCE_QUEUE in args.queues.split(","):
        from shared.catalog import catalog_for

        catalog_for(settings)
    _say_cautions(settings)
    concurrency = args.concurrency or settings.worker_concurrency
    argv = [*_celery(settings), "worker", "--queues", args.queues,
            "--concurrency", str(concurrency), "--prefetch-multiplier", "1", "--loglevel", args.loglevel,
            "--without-gossip", "--without-mingle", "--hostname", args.name]
    if args.beat:
        argv += ["--beat", *_beat_schedule()]
    if args.metrics_port is not None:  # read by worker.celery_app in the process exec'd below (0: none)
        os.environ["UPSCALER_WORKER_METRICS_PORT"] = str(args.metrics_port)
    _multiprocess_metrics_dir("worker")
    _exec(argv)
    return 0


def run_worker_health(args: argparse.Namespace) -> int:
    from shared.settings import Settings
    from worker.liveness import check

    healthy, lines = check(Settings.from_env(secret=False).worker_heartbeat_timeout, args.pid)
    print("\n".join(lines))
    return 0 if healthy else 1


def run_beat(args: argparse.Namespace) -> int:
    from shared.settings import Settings

    argv = [*_celery(Settings.from_env()), "beat", "--loglevel", args.loglevel, *_beat_schedule()]
    _exec(argv)
    return 0


def run_wait_for_schema(args: argparse.Namespace) -> int:
    from shared.migrate import wait_for_schema
    from shared.settings import Settings

    wait_for_schema(Settings.from_env(secret=False).database_url, args.interval, lambda line: print(line, flush=True))
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    from shared.db import shown_url
    from shared.migrate import upgrade
    from shared.settings import Settings

    settings = Settings.from_env(secret=False)
    where = shown_url(settings.database_url)
    newer = upgrade(settings.database_url)
    if newer:
        print(f"database at revision {newer}, newer than this release knows (a rollback): left as it is, and this "
              f"release serves on it ({where})")
    else:
        print(f"database at head ({where})")
    return 0
