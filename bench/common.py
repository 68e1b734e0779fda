"""Shared set-up for the platform benchmarks: a throw-away platform (Redis, SQLite, local storage)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
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
        env = {**os.environ, **self.settings.to_env(), "TF_CPP_MIN_LOG_LEVEL": "3", **(extra_env or {})}
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
    with tempfile.TemporaryDirectory(prefix="upscaler-bench-") as tmp:
        folder = Path(tmp)
        redis, port = start_redis(folder / "redis")
        settings = Settings(env="test", database_url=f"sqlite:///{folder / 'bench.db'}",
                            redis_url=f"redis://127.0.0.1:{port}/0", storage_dir=folder / "storage",
                            secret_key="bench-secret-0123456789", rate_limit_per_minute=0, max_active_jobs=0,
                            daily_megapixels=0, **overrides)
        upgrade(settings.database_url)
        bench = Platform(folder, settings, redis, port)
        try:
            yield bench
        finally:
            stop(bench.redis)
