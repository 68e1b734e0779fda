"""Real Celery worker processes for integration tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from cli.processes import stop
from shared.settings import Settings


def start_worker(settings: Settings, log: Path, *extra: str, concurrency: int = 1,
                 env: dict[str, str] | None = None) -> subprocess.Popen:
    """A Celery worker on every queue, leading its own process group (stop it with ``stop_worker``)."""
    env = {**os.environ, **settings.to_env(), "TF_CPP_MIN_LOG_LEVEL": "3", "UPSCALER_INFERENCE_THREADS": "1",
           **(env or {})}
    out = open(log, "ab")  # noqa: SIM115 - the child owns it
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--concurrency",
                             str(concurrency), "--loglevel", "INFO", "--without-gossip", "--without-mingle",
                             "--queues", "inference,maintenance,webhooks", *extra],
                            env=env, stdout=out, stderr=subprocess.STDOUT, process_group=0)


def stop_worker(process: subprocess.Popen) -> None:
    """Stop a worker or beat started here with what is left of its process group: a worker main that did not end
    its warm shutdown in time is SIGKILLed, and that used to leave its pool child running, orphaned, after the
    suite."""
    stop(process, group=True)


def wait_until_ready(log: Path, timeout: float = 180) -> None:
    """Block until a worker started by ``start_worker`` logs that it consumes (its boot imports TensorFlow, which
    takes long on a loaded machine); fails the test if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and " ready." in log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise AssertionError(f"the worker did not start within {timeout:.0f} s: {log.read_text(errors='replace')[-2000:]}")


def start_beat(settings: Settings, log: Path) -> subprocess.Popen:
    """A separate beat process (the sweeper's scheduler), so a worker's children are only its pool."""
    env = {**os.environ, **settings.to_env()}
    out = open(log, "ab")  # noqa: SIM115 - the child owns it
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "worker.celery_app", "beat", "--loglevel", "INFO",
                             "--schedule", str(log.with_suffix(".schedule"))], env=env, stdout=out,
                            stderr=subprocess.STDOUT, process_group=0)


def with_beat(schedule_dir: Path) -> tuple[str, ...]:
    return ("--beat", "--schedule", str(schedule_dir / "beat-schedule"))


def wait_for(client, job_id: str, timeout: float = 120, until=None) -> dict:
    """Poll the job through the API until it ends (or ``until(job)`` holds)."""
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = client.get(f"/v1/jobs/{job_id}").get_json()
        if (until(body) if until else body["status"] in ("succeeded", "failed", "canceled")):
            return body
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not done after {timeout}s: {body}")


def children(pid: int) -> list[int]:
    """Direct child processes (the prefork pool of a Celery worker)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []
