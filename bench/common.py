"""Shared set-up for the platform benchmarks: a throw-away platform (Redis, SQLite, local storage)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cli.processes import start_redis, stop  # noqa: E402
from shared.migrate import upgrade  # noqa: E402
from shared.settings import Settings  # noqa: E402


@dataclass
class Platform:
    folder: Path
    settings: Settings
    redis: subprocess.Popen
    redis_port: int

    def worker(self, name: str, concurrency: int = 1, queues: str = "inference,maintenance,webhooks",
               extra_env: dict[str, str] | None = None, beat: bool = False) -> subprocess.Popen:
        env = {**child_env(self.settings, self.folder), **(extra_env or {})}
        argv = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-n", f"{name}@%h",
                "--concurrency", str(concurrency), "--queues", queues, "--loglevel", "WARNING",
                "--without-gossip", "--without-mingle"]
        if beat:
            argv += ["--beat", "--schedule", str(self.folder / f"beat-{name}")]
        log = open(self.folder / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)

    def restart_redis(self) -> None:
        stop(self.redis)
        self.redis, _ = start_redis(self.folder / "redis", port=self.redis_port)


@contextmanager
def platform(**overrides) -> Iterator[Platform]:
    """Redis, SQLite and local storage in a temporary folder, all removed (Redis stopped) however it ends."""
    with tempfile.TemporaryDirectory(prefix="upscaler-bench-") as tmp:
        folder = Path(tmp)
        redis, port = start_redis(folder / "redis")
        bench = Platform(folder, bench_settings(folder, f"redis://127.0.0.1:{port}/0", **overrides), redis, port)
        try:
            upgrade(bench.settings.database_url)
            yield bench
        finally:
            stop(bench.redis)


def bench_settings(folder: Path, redis_url: str, **overrides) -> Settings:
    """A benchmark's whole configuration, none of it from the caller's environment (an operator's exported
    deployment settings sent a benchmark's uploads to a real bucket), with no per-tenant limits."""
    return Settings(env="test", database_url=f"sqlite:///{folder / 'bench.db'}", redis_url=redis_url,
                    storage="local", storage_dir=folder / "storage", secret_key="bench-secret-0123456789",
                    rate_limit_per_minute=0, max_active_jobs=0, daily_megapixels=0, **overrides)


def child_env(settings: Settings, folder: Path) -> dict[str, str]:
    """The environment of a benchmark's child process: the settings, and its metrics folder inside ``folder``."""
    metrics = folder / "metrics"
    metrics.mkdir(exist_ok=True)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("UPSCALER_")}
    return {**inherited, **settings.to_env(), "PROMETHEUS_MULTIPROC_DIR": str(metrics), "TF_CPP_MIN_LOG_LEVEL": "3"}


def job_id(response) -> str:
    """The id of a job the API accepted; a refusal ends the benchmark with the API's own words."""
    body = response.get_json()
    if response.status_code != 202:
        raise SystemExit(f"the API refused the job ({response.status_code} {body.get('code')}): {body.get('detail')}")
    return body["id"]


def wait_for_jobs(get: Callable[[str], dict], ids: list[str], timeout: float = 3600, poll: float = 0.5) -> list[dict]:
    """Every job's JSON once all have ended (succeeded, failed or canceled); gives up after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        states = [get(job) for job in ids]
        if all(s["status"] in ("succeeded", "failed", "canceled") for s in states):
            return states
        if time.monotonic() > deadline:
            raise SystemExit(f"jobs still not done after {timeout:.0f} s: "
                             f"{[s['status'] for s in states if s['status'] not in ('succeeded', 'failed')]}")
        time.sleep(poll)
