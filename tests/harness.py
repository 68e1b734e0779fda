"""Real services for the test suite: Redis, PostgreSQL and an S3-compatible server on loopback.

* Redis: Debian's ``redis-server`` on a free port.
* PostgreSQL: Debian's server binaries, a throw-away cluster in a temp folder on a free port. When the
  tests run as root (CI does) the cluster runs as an unprivileged system user, since PostgreSQL
  refuses to run as root.
* S3: moto's server mode, a real HTTP server speaking the S3 wire protocol that boto3 talks to over
  TCP. Chosen because it is pip-installable (no binary download) and starts in-process in a second;
  it does not check signatures, so signing is tested where we own it (local signed links).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from cli.processes import free_port, wait_for_port

PG_USER = "upscaler-test"


def postgres_bin() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _as_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", PG_USER, "--", *argv]


def _ensure_user() -> None:
    if os.geteuid() != 0:
        return
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
                       check=True)


class PostgresCluster:
    def __init__(self) -> None:
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise FileNotFoundError("PostgreSQL server binaries not found (apt-get install postgresql)")
        self.bin = bin_dir
        _ensure_user()
        self.root = Path(tempfile.mkdtemp(prefix="upscaler-pg-"))
        os.chmod(self.root, 0o777)
        self.data = self.root / "data"
        self.port = free_port()
        subprocess.run(_as_user([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                                 "--no-sync", "-E", "UTF8"]), check=True, stdout=subprocess.DEVNULL)
        self.process = subprocess.Popen(
            _as_user([str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port), "-h", "127.0.0.1",
                      "-k", str(self.root), "-c", "fsync=off", "-c", "synchronous_commit=off",
                      "-c", "full_page_writes=off", "-c", "max_connections=200"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port("127.0.0.1", self.port, timeout=30, process=self.process)
        self._counter = 0

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        import psycopg

        self._counter += 1
        name = f"test_{os.getpid()}_{self._counter}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        shutil.rmtree(self.root, ignore_errors=True)


class MotoS3:
    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        wait_for_port("127.0.0.1", self.port)
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop()
