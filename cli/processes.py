"""Starting and stopping local helper processes (Redis, the API, workers) for ``dev`` and the tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_for_port(host: str, port: int, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process {process.args[0]} exited with {process.returncode} before listening")
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def start_redis(data_dir: Path, port: int | None = None) -> tuple[subprocess.Popen, int]:
    """Debian's redis-server on loopback, persisting into ``data_dir`` (AOF, so a restart keeps the queue)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server is not installed (Debian/Ubuntu: apt-get install redis-server)")
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir), "--appendonly", "yes",
         "--save", "", "--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0,  # stopped as a group (``stop``)
    )
    wait_for_port("127.0.0.1", port, process=process)
    return process, port


def stop(process: subprocess.Popen, timeout: float = 15.0, *, group: bool = False) -> None:
    """Ask politely (SIGTERM), then insist (SIGKILL). ``group``: the process was started as the leader of its own
    process group (``process_group=0``), and what is left of the group goes with it: a gunicorn worker whose
    master was killed, stuck in its own shutdown, outlived ``upscaler dev`` for good, deaf to SIGTERM."""
    _terminate_then_kill([process], timeout, group=group, hurried=lambda: False)


def stop_all(processes: list[subprocess.Popen], timeout: float = 15.0) -> None:
    """Stop process-group leaders together: SIGTERM to each, one shared deadline, then SIGKILL to what is left of
    every group. A Ctrl-C or SIGTERM meanwhile (the user who will not wait) cuts the wait short instead of
    interrupting the stop: a second Ctrl-C used to end the launcher mid-loop, leaving the workers and Redis running
    with no parent. Call from the main thread (signal handlers)."""
    hurry: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: hurry.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        _terminate_then_kill(processes, timeout, group=True, hurried=lambda: bool(hurry))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _terminate_then_kill(processes: list[subprocess.Popen], timeout: float, *, group: bool,
                         hurried: Callable[[], bool]) -> None:
    """The one stop sequence: SIGTERM to every process still running, wait for all of them under one deadline
    (cut short once ``hurried()``), SIGKILL to the rest, and with ``group`` to what is left of each one's group."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + timeout
    while not hurried() and time.monotonic() < deadline and any(p.poll() is None for p in processes):
        time.sleep(0.05)
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()
        if group:
            with contextlib.suppress(ProcessLookupError):  # the usual case: its children ended before it
                os.killpg(process.pid, signal.SIGKILL)
