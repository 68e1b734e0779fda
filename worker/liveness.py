"""Is this worker's pool alive? Heartbeats from pool processes, a watchdog in the main process, a probe.

Celery's main process answers ``inspect ping`` even when none of its pool processes can start (for
example when each is killed for missing the UP deadline), so a ping says nothing about whether jobs can
run. Instead every pool process touches a heartbeat file named after its parent every few seconds; the
main process exits non-zero when no pool process has beaten for ``UPSCALER_WORKER_HEARTBEAT_TIMEOUT``
seconds, and ``upscaler worker-health`` (the compose healthcheck and the Kubernetes probes) fails on a
stale heartbeat, so an orchestrator replaces the worker either way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)
BEAT_SECONDS = 5.0
PREFIX = "upscaler-worker-"


def heartbeat_path(main_pid: int, folder: Path | None = None) -> Path:
    return Path(folder or tempfile.gettempdir()) / f"{PREFIX}{main_pid}.alive"


def start_heartbeat(path: Path, first_after: float) -> threading.Thread:
    """In a pool process: touch ``path`` every few seconds for the life of the process, starting once the
    process has outlived Celery's UP deadline (``first_after``): a process killed for missing it, or dying
    during start-up, never beats, so a pool stuck in a start-and-kill loop reads as dead."""

    def beat() -> None:
        time.sleep(first_after)
        while True:
            try:
                path.touch()
            except OSError:
                log.warning("cannot write heartbeat %s", path)
            time.sleep(BEAT_SECONDS)

    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    return thread


def age(path: Path, since: float) -> float:
    """Seconds since the last heartbeat (or since ``since`` when there has been none yet)."""
    try:
        return time.time() - max(path.stat().st_mtime, since)
    except FileNotFoundError:
        return time.time() - since


def child_pids() -> list[int]:
    """This process's children (its pool), from /proc; empty where /proc has no such file."""
    pids = []
    for task in Path("/proc/self/task").glob("*"):
        with contextlib.suppress(OSError):
            pids += [int(p) for p in (task / "children").read_text().split()]
    return pids


def start_watchdog(path: Path, timeout: float, children: Callable[[], list[int]] = child_pids) -> threading.Thread:
    """In the main process: exit with status 3 when no pool process has beaten for ``timeout`` seconds."""
    started = time.time()

    def watch() -> None:
        while True:
            time.sleep(min(BEAT_SECONDS, timeout / 4))
            silent = age(path, started)
            if silent > timeout:
                log.critical("no pool process has started or stayed alive for %.0f s (UPSCALER_WORKER_HEARTBEAT_"
                             "TIMEOUT=%.0f): exiting with status 3 so the orchestrator restarts this worker",
                             silent, timeout)
                for pid in children():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                path.unlink(missing_ok=True)
                os._exit(3)

    thread = threading.Thread(target=watch, name="pool-watchdog", daemon=True)
    thread.start()
    return thread


def check(timeout: float, pid: int | None = None, folder: Path | None = None) -> tuple[bool, list[str]]:
    """The probe: healthy when every running worker on this host (or worker ``pid``) has a heartbeat fresher
    than ``timeout``."""
    lines, healthy, found = [], True, False
    pattern = f"{PREFIX}{pid if pid else '*'}.alive"
    for path in sorted(Path(folder or tempfile.gettempdir()).glob(pattern)):
        pid = int(path.name[len(PREFIX):-len(".alive")])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)  # a worker that is gone
            continue
        except PermissionError:
            pass
        found = True
        silent = age(path, path.stat().st_mtime)
        fresh = silent <= timeout
        healthy &= fresh
        lines.append(f"worker {pid}: last pool heartbeat {silent:.0f} s ago ({'ok' if fresh else 'stale'})")
    if not found:
        return False, ["no worker with a live pool on this host"]
    return healthy, lines
