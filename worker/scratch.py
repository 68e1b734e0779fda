"""Scratch folders and state files in the temporary directory, named after the process that made them.

Why: a worker killed mid-job (out of memory, SIGKILL, the hard time limit) leaves its folder behind, a job's
input and, for a split job, a row file of 3 bytes per output pixel (3 GB at the output cap), and nothing removed
them: every kill took disk for good (and every launch left its metrics folders and beat schedule). Each pool
process, and each launcher, as it starts, removes what processes that no longer exist left.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "upscaler-"
_OWNED = re.compile(rf"^{PREFIX}(\d+)-")


def scratch(kind: str) -> tempfile.TemporaryDirectory:
    """A temporary folder for one ``kind`` of work (``job``, ``band``, ``assemble``) of this process."""
    return tempfile.TemporaryDirectory(prefix=f"{PREFIX}{os.getpid()}-{kind}-")


def scratch_name(kind: str) -> str:
    """A path in the temporary folder for this process's ``kind`` of state (a metrics folder, beat's schedule
    file), removed by ``remove_orphaned`` once the process is gone (the launchers exec, so nothing of theirs
    runs at exit to remove it)."""
    return os.path.join(tempfile.gettempdir(), f"{PREFIX}{os.getpid()}-{kind}")


def remove_orphaned(root: Path | None = None) -> int:
    """Remove the scratch folders and files of processes that are gone; returns how many went. One of a live
    process (this one's, another worker's) stays, as does one whose process id has been taken by another."""
    removed = 0
    for entry in Path(root or tempfile.gettempdir()).iterdir():
        owner = _OWNED.match(entry.name)
        if not owner or _alive(int(owner.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed += not entry.exists()
    if removed:
        log.info("removed %d scratch folder(s) of workers that were killed", removed)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
