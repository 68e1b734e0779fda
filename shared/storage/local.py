"""A local folder as object storage: the embedded default for one machine.

Writes go to a temporary file in ``<root>/.partial/`` that is then hard-linked into place, so a key
appears whole or not at all and an existing key is never replaced. A process killed mid-write leaves
only a partial file there, which ``remove_stale_partials`` (run by the sweeper) deletes. Every failure of the
file system is a ``StorageError`` (a missing file ``ObjectMissing``), as S3's are: a permission or I/O error is
an outage the job waits out, not a fault of the job.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from shared.storage.base import ObjectExists, ObjectMissing, StorageError, StoredObject, check_key

log = logging.getLogger(__name__)
READY_PROBE_BYTES = 64 * 1024  # what readiness writes: an empty file is still created on a full disk


class LocalStorage:
    max_link_seconds: int | None = None  # the API signs its own links: any life

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.partial_dir = self.root / ".partial"

    def path_for(self, key: str) -> Path:
        """The file holding ``key`` (``check_key``: it cannot leave the root or name the backend's own files)."""
        path = self.root / check_key(key)
        if self.root not in path.resolve().parents:  # a symlinked folder pointing out of the root
            raise StorageError(f"invalid key {key!r}")
        return path

    def served_path(self, key: str) -> Path | None:
        """The file itself: the API sends it (through its signed ``/v1/files`` links)."""
        return self.path_for(key)

    def _publish(self, key: str, write) -> None:
        target = self.path_for(key)
        tmp = self.partial_dir / f"upload-{secrets.token_hex(8)}"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self.partial_dir.mkdir(parents=True, exist_ok=True)
            # mode 0666 less the umask, as any file the process creates (mkstemp's 0600 kept an API and a worker
            # running as two users from reading each other's objects)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as exc:
            raise StorageError(f"cannot write to {target.parent}: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.link(tmp, target)
            _sync_folder(target.parent)  # the link itself survives a power cut once its job row says it is there
        except FileExistsError as exc:
            raise ObjectExists(key) from exc
        except OSError as exc:
            raise StorageError(f"cannot write {key}: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self._publish(key, lambda fh: fh.write(data))

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        with open(path, "rb") as src:
            self._publish(key, lambda fh: shutil.copyfileobj(src, fh, 1024 * 1024))

    def _read(self, key: str, read):
        try:
            return read(self.path_for(key))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectMissing(key) from exc
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc}") from exc

    def get_bytes(self, key: str) -> bytes:
        return self._read(key, Path.read_bytes)

    def download(self, key: str, path: Path) -> None:
        self._read(key, lambda source: shutil.copyfile(source, path))

    def download_to(self, key: str, target: BinaryIO) -> None:
        def copy(source: Path) -> None:
            with source.open("rb") as fh:
                shutil.copyfileobj(fh, target, 8 * 1024 * 1024)

        self._read(key, copy)

    def delete(self, key: str) -> None:
        try:
            self.path_for(key).unlink(missing_ok=True)
        except OSError as exc:  # e.g. permissions: a storage failure callers handle, not a crash
            raise StorageError(f"cannot delete {key}: {exc}") from exc

    def exists(self, key: str) -> bool:
        try:
            return self._read(key, lambda path: stat.S_ISREG(path.stat().st_mode))
        except ObjectMissing:
            return False

    def list_objects(self, prefix: str, start_after: str, limit: int) -> list[StoredObject]:
        folder, _, _ = prefix.rpartition("/")
        try:
            return list(itertools.islice(self._walk(self.path_for(folder) if folder else self.root,
                                                    f"{folder}/" if folder else "", prefix, start_after), limit))
        except OSError as exc:
            raise StorageError(f"cannot list {prefix!r}: {exc}") from exc

    def _walk(self, directory: Path, base: str, prefix: str, start_after: str) -> Iterator[StoredObject]:
        """Files under ``directory`` (whose keys start with ``base``) in S3's key order: a folder's entries sorted
        as the keys they lead to (a folder ``a`` as ``a/``, so ``a.png`` comes before ``a/x``), folders that hold
        only keys at or before ``start_after`` skipped unread; dot-names (``.partial``, readiness probes) are no
        objects."""
        try:
            entries = sorted((entry for entry in os.scandir(directory) if not entry.name.startswith(".")),
                             key=lambda entry: entry.name + ("/" if entry.is_dir(follow_symlinks=False) else ""))
        except FileNotFoundError:
            return
        for entry in entries:
            key = base + entry.name
            if entry.is_dir(follow_symlinks=False):
                inner = key + "/"
                if not (inner.startswith(prefix) or prefix.startswith(inner)):
                    continue
                if inner <= start_after and not start_after.startswith(inner):
                    continue  # every key in it sorts before start_after
                yield from self._walk(Path(entry.path), inner, prefix, start_after)
            elif entry.is_file(follow_symlinks=False) and key.startswith(prefix) and key > start_after:
                try:
                    modified = entry.stat(follow_symlinks=False).st_mtime
                except FileNotFoundError:  # deleted since the folder was read
                    continue
                yield StoredObject(key, datetime.fromtimestamp(modified, UTC),
                                   timedelta(seconds=time.time() - modified))  # this kernel stamped it

    def presigned_url(self, key: str, expires_in: int, filename: str, content_type: str) -> str | None:
        return None

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".ready-") as probe:
                probe.write(bytes(READY_PROBE_BYTES))
                probe.flush()
                os.fsync(probe.fileno())
        except OSError as exc:
            raise StorageError(f"storage folder {self.root} is not writable: {exc}") from exc

    def remove_stale_partials(self, older_than_seconds: float) -> int:
        """Delete partial files of writes that were interrupted (killed process); returns how many."""
        cutoff = time.time() - older_than_seconds
        removed = 0
        try:
            for path in self.partial_dir.iterdir():
                try:
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed += 1
                except FileNotFoundError:
                    continue
        except FileNotFoundError:
            return removed
        except OSError as exc:  # a sweep goes on: the next one tries again
            log.warning("could not remove stale partial files in %s: %s", self.partial_dir, exc)
        return removed


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
