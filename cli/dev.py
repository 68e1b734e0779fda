"""``upscaler dev``: the whole platform on one machine with embedded defaults, then one job through it.

Starts (or reuses) Redis, migrates the SQLite database, starts the API (gunicorn), an inference worker and
a light worker of its own for the sweeper and webhooks (so a long job never delays a sweep or a delivery),
submits a sample image, shows its progress and prints where the result is. Ctrl-C stops everything it
started, and so does any of its processes stopping (a platform without its API or worker is not running). One
launcher per ``--var`` folder (a lock on ``VAR/.dev.lock``): a second one emptied the first's temporary folder
and shared its Redis data.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from cli.arguments import tcp_port
from cli.processes import free_port, port_open, start_redis, stop_all, wait_for_port
from shared.limits import EXTENSIONS, OUTPUT_FORMATS
from shared.queue import INFERENCE_QUEUE, MAINTENANCE_QUEUE, WEBHOOK_QUEUE

SAMPLE = Path(__file__).resolve().parent.parent / "shared" / "samples" / "sample.jpg"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dev", help="run API + worker + Redis locally and upscale a sample image")
    p.add_argument("image", nargs="?", type=Path, default=SAMPLE, help="image to upscale (default: a sample photo)")
    p.add_argument("--scale", type=int, choices=(2, 3, 4), default=4)
    p.add_argument("--format", choices=sorted(OUTPUT_FORMATS), default="png")
    p.add_argument("--model", default=None)
    p.add_argument("--port", type=tcp_port, default=None, help="API port (default 8000, or a free one if taken)")
    p.add_argument("--var", type=Path, default=Path("var"), help="folder for the database, storage and Redis data")
    p.add_argument("--exit", action="store_true", help="stop everything once the job has finished")
    p.set_defaults(func=run)


def _env(args: argparse.Namespace, redis_port: int, api_port: int) -> dict[str, str]:
    var = args.var.resolve()
    env = dict(os.environ)
    env.setdefault("UPSCALER_DATABASE_URL", f"sqlite:///{var / 'upscaler.db'}")
    env.setdefault("UPSCALER_STORAGE", "local")
    env.setdefault("UPSCALER_STORAGE_DIR", str(var / "storage"))
    env.setdefault("UPSCALER_SECRET_FILE", str(var / "secret_key"))
    env["UPSCALER_REDIS_URL"] = env.get("UPSCALER_REDIS_URL") or f"redis://127.0.0.1:{redis_port}/0"
    env["UPSCALER_API_PORT"] = str(api_port)
    env.setdefault("UPSCALER_PUBLIC_URL", f"http://127.0.0.1:{api_port}")
    env.setdefault("UPSCALER_SWEEP_INTERVAL", "10")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # the processes' own temporary files (beat's schedule, the metrics folders, band files) in one folder the
    # launcher empties when it stops: each run left /tmp/upscaler-beat-* and three metrics folders behind
    env["TMPDIR"] = str(var / "tmp")
    return env


def run(args: argparse.Namespace) -> int:
    if not args.image.exists():
        print(f"no such image: {args.image}", file=sys.stderr)
        return 2
    if args.port and port_open("127.0.0.1", args.port):  # else the launcher would talk to whatever listens there
        print(f"upscaler dev: port {args.port} is in use; choose another --port (or leave it out)", file=sys.stderr)
        return 2
    args.var.mkdir(parents=True, exist_ok=True)
    with _only_launcher(args.var) as other:
        if other is not None:
            print(f"upscaler dev: another upscaler dev uses {args.var} (pid {other}); stop it, or give this one "
                  "another --var", file=sys.stderr)
            return 2
        return _launch(args)


@contextlib.contextmanager
def _only_launcher(var: Path) -> Iterator[str | None]:
    """Hold ``var``'s launcher lock while the platform runs: yields None, or the pid of the launcher holding it.
    The kernel drops the lock when its process dies, however it dies, so a killed launcher never blocks the
    next."""
    path = var / ".dev.lock"
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            yield lock.read().strip() or "unknown"
            return
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        yield None


def _launch(args: argparse.Namespace) -> int:
    from upscaler_client import AuthenticationError, Client, JobFailed

    started: dict[subprocess.Popen, str] = {}  # each process the launcher started (in order) -> what it is
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        redis_port = 6379
        if not os.environ.get("UPSCALER_REDIS_URL") and not port_open("127.0.0.1", redis_port):  # empty: unset
            process, redis_port = start_redis(args.var.resolve() / "redis")
            started[process] = "redis-server"
            print(f"started redis-server on 127.0.0.1:{redis_port}")
        api_port = args.port or (8000 if not port_open("127.0.0.1", 8000) else free_port())
        env = _env(args, redis_port, api_port)
        Path(env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
        if not _broker_answers(env["UPSCALER_REDIS_URL"]):  # else the job sat "queued (0%)" for an hour
            print(f"upscaler dev: no Redis answers at {env['UPSCALER_REDIS_URL']} (UPSCALER_REDIS_URL); start it, "
                  "or leave the variable out and the launcher starts one", file=sys.stderr)
            return 1
        upscaler = [sys.executable, "-m", "cli"]
        if subprocess.run([*upscaler, "migrate"], env=env).returncode != 0:  # its own line says why
            return 1
        logs = args.var.resolve() / "logs"  # said absolute: the launcher may run from another folder
        logs.mkdir(exist_ok=True)
        for name, queues, extra in (("worker", INFERENCE_QUEUE, []),
                                    ("worker-light", f"{MAINTENANCE_QUEUE},{WEBHOOK_QUEUE}", ["--beat"])):
            log = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the worker
            worker = subprocess.Popen([*upscaler, "worker", "--queues", queues, "--concurrency", "1",
                                       "--name", f"{name}@%h", *extra], env=env, stdout=log, stderr=subprocess.STDOUT,
                                      process_group=0)
            started[worker] = name
        api_log = open(logs / "api.log", "ab")  # noqa: SIM115 - lives as long as the API
        # each in a process group of its own (with its pool or gunicorn workers), stopped as a whole (``stop``)
        api = subprocess.Popen([*upscaler, "api"], env=env, stdout=api_log, stderr=subprocess.STDOUT, process_group=0)
        started[api] = "api"
        try:
            wait_for_port("127.0.0.1", api_port, timeout=60, process=api)
        except RuntimeError:
            print(f"upscaler dev: the API did not start; see {logs / 'api.log'}", file=sys.stderr)
            return 1
        base = f"http://127.0.0.1:{api_port}"
        print(f"API on {base} (web page: {base}/, OpenAPI: {base}/v1/openapi.json); logs in {logs}/")

        keys = [k.strip() for k in env.get("UPSCALER_API_KEYS", "").split(",") if k.strip()]
        client = Client(base, keys[0] if keys else None)  # None: the client's own UPSCALER_API_KEY
        try:
            job = client.jobs.create(args.image, scale=args.scale, format=args.format, model=args.model)
        except AuthenticationError as exc:  # a key was created in this database: the API is no longer open
            why = ("UPSCALER_API_KEY is not one of its keys" if os.environ.get("UPSCALER_API_KEY") or keys else
                   f"API keys exist in {env['UPSCALER_DATABASE_URL']}, so every call needs one")
            print(f"upscaler dev: the API refused the launcher's job ({exc.detail}): {why}; set UPSCALER_API_KEY "
                  "to a key of this database (make one: upscaler keys create --name NAME)", file=sys.stderr)
            return 1
        print(f"submitted job {job.id}: {args.image.name} {job.input.width}x{job.input.height} "
              f"-> x{args.scale} {job.output.width}x{job.output.height} {args.format} ({job.model})")
        display = _progress_display()

        def all_running(_answer=None) -> None:
            if (stopped := _first_stopped(started)) is not None:
                raise _ProcessStopped(stopped)

        try:
            job = job.wait(timeout=3600, on_progress=lambda job: (display(job), all_running()),
                           on_unavailable=all_running)
        except JobFailed as exc:
            print(f"job {exc.job.status}: {exc.job.error}", file=sys.stderr)
            return 1
        except _ProcessStopped as exc:  # a worker gone: the job would wait an hour for nobody
            return _say_stopped(exc.process, started[exc.process], logs)
        out = job.download(args.var / "results" / f"{args.image.stem}_x{args.scale}.{_ext(args.format)}")
        print(f"done in {job.timings['total_s']:.1f}s: {out.resolve()}")
        print(f"result URL (expires {job.raw['result_url_expires_at']}): {job.result_url}")
        if args.exit:
            return 0
        bearer = ' -H "Authorization: Bearer <your key>"' if client.api_key else ""  # a keyed API: 401 without
        print("platform running; try:\n"
              f"  curl{bearer} -F image=@photo.jpg -F scale=4 -F format=png {base}/v1/jobs\n"
              "Ctrl-C stops everything.")
        while (stopped := _first_stopped(started)) is None:
            time.sleep(1)
        return _say_stopped(stopped, started[stopped], logs)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (a timeout in CI): not a success
        print("\nstopping")
        return 130
    finally:
        # each started as a process group of its own; Redis last, so a worker's warm shutdown can still ack
        stop_all([process for process, name in started.items() if name != "redis-server"])
        stop_all([process for process, name in started.items() if name == "redis-server"])
        shutil.rmtree(args.var.resolve() / "tmp", ignore_errors=True)


class _ProcessStopped(Exception):
    """One of the launcher's processes ended while it waited for the job."""

    def __init__(self, process: subprocess.Popen):
        super().__init__(process.pid)
        self.process = process


def _first_stopped(started: Iterable[subprocess.Popen]) -> subprocess.Popen | None:
    return next((process for process in started if process.poll() is not None), None)


def _say_stopped(process: subprocess.Popen, name: str, logs: Path) -> int:
    """Said once, with where to look; the launcher then stops the rest (a platform missing a part is not up)."""
    print(f"upscaler dev: the {name} process stopped (exit {process.returncode}; see {logs}/); "
          "stopping the rest", file=sys.stderr)
    return 1


def _broker_answers(url: str) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, ValueError):
        return False


def _progress_display():
    """A live bar on a terminal; one line per status change otherwise (logs, CI)."""
    from tqdm import tqdm

    if not sys.stdout.isatty():
        last = [None]

        def log_line(job) -> None:
            if job.status != last[0]:
                last[0] = job.status
                print(f"  {job.status} ({job.progress:.0%})", flush=True)

        return log_line
    bar = tqdm(total=100, unit="%", desc="queued", bar_format="{desc:<10} {bar} {n:.0f}%")

    def update(job) -> None:
        bar.set_description_str(job.status)
        bar.n = round(job.progress * 100)
        bar.refresh()
        if job.done:
            bar.close()

    return update


def _ext(output_format: str) -> str:
    return EXTENSIONS[output_format]
