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
# What the product keeps in the temporary folder: scratch() folders of a job, band or assembly, scratch_name()'s
# metrics folders and beat schedule. Only these kinds are ever removed.
KINDS = ("job", "band", "assemble", "metrics-api", "metrics-worker", "beat")
# upscaler-<pid>.<start time>-<kind>: the start time (Linux: clock ticks since boot) tells a process from a later
# one given the same id, as after a container's restart, whose temporary folder (an emptyDir) outlives it. Both the
# start time and a known kind are required: "upscaler-<digits>-" alone took a user's /tmp/upscaler-2024-11-holiday
# for the folder of a process 2024 that was gone, and removed it with its photos.
_OWNED = re.compile(rf"^{PREFIX}(\d+)\.(\d+)-(?:{'|'.join(map(re.escape, KINDS))})(?:[-.]|$)")
# A folder of work beside a result (``scratch_beside``), in a user's own folder: hidden, and a name no photo has,
# so that removing those of gone processes there can only ever remove ours (``upscaler-2024-trip.png`` matches
# the pattern above)
BESIDE_PREFIX = ".upscaler-partial-"
_BESIDE = re.compile(rf"^{re.escape(BESIDE_PREFIX)}(\d+)(?:\.(\d+))?-")


def scratch(kind: str) -> tempfile.TemporaryDirectory:
    """A temporary folder for one ``kind`` of work (``job``, ``band``, ``assemble``) of this process."""
    assert kind in KINDS, kind  # one the clean-up knows, or a killed process's folder would stay for good
    return tempfile.TemporaryDirectory(prefix=f"{PREFIX}{_owner()}-{kind}-")


def scratch_name(kind: str) -> str:
    """A path in the temporary folder for this process's ``kind`` of state (a metrics folder, beat's schedule
    file), removed by ``remove_orphaned`` once the process is gone (the launchers exec, so nothing of theirs
    runs at exit to remove it)."""
    assert kind in KINDS, kind
    return os.path.join(tempfile.gettempdir(), f"{PREFIX}{_owner()}-{kind}")


def scratch_beside(path: Path, kind: str) -> tempfile.TemporaryDirectory:
    """A temporary folder in ``path``'s folder, for work as large as the result it becomes there (a streamed
    output's rows: 3 bytes per output pixel), on the disk that will hold the result rather than the temporary one.
    Named after this process, so that a run killed before it could remove it (SIGKILL, out of memory) has it
    removed by the next (``remove_orphaned_beside``)."""
    return tempfile.TemporaryDirectory(prefix=f"{BESIDE_PREFIX}{_owner()}-{kind}-", dir=path.parent)


def remove_orphaned_beside(folder: Path) -> int:
    """Remove from ``folder`` the ``scratch_beside`` folders of processes that are gone; returns how many went."""
    return remove_orphaned(folder, _BESIDE) if folder.is_dir() else 0


def remove_orphaned(root: Path | None = None, owned: re.Pattern[str] = _OWNED) -> int:
    """Remove the scratch folders and files of processes that are gone; returns how many went. One of a live
    process (this one's, another worker's) stays; one that cannot be removed (another user's, a read-only
    mount) is logged and left: this runs as every pool process and launcher starts, which it must never stop."""
    removed = 0
    try:
        entries = list(Path(root or tempfile.gettempdir()).iterdir())
    except OSError as exc:
        log.warning("could not look for scratch folders of killed workers: %s", exc)
        return 0
    for entry in entries:
        owner = owned.match(entry.name)
        if not owner or _alive(int(owner.group(1)), owner.group(2)):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink(missing_ok=True)
            removed += 1
        except OSError as exc:
            log.warning("could not remove %s, left by a process that is gone: %s", entry, exc)
    if removed:
        log.info("removed %d scratch folder(s) and file(s) of processes that are gone", removed)
    return removed


def _owner() -> str:
    """``<pid>.<start time>``; ``<pid>.0`` where the start time cannot be read (no /proc), so the clean-up's pattern,
    which requires both, still knows the name (and ``_alive`` then goes by the pid alone)."""
    return f"{os.getpid()}.{_start_time(os.getpid()) or 0}"


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (``/proc/<pid>/stat``'s field 22), None where that cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the name, in parentheses, may hold spaces
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        pass
    return started in (None, "0") or _start_time(pid) in (None, started)  # the same process, not a later one
