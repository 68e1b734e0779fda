"""A local folder as object storage: the embedded default for one machine.

Writes go to a temporary file in ``<root>/.partial/`` that is then hard-linked into place, so a key
appears whole or not at all and an existing key is never replaced. A process killed mid-write leaves
only a partial file there, which ``remove_stale_partials`` (run by the sweeper) deletes.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from shared.storage.base import ObjectExists, ObjectMissing, StorageError, StoredObject


class LocalStorage:
    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.partial_dir = self.root / ".partial"

    def path_for(self, key: str) -> Path:
        """The file holding ``key``; refuses keys that would escape the root."""
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise StorageError(f"invalid key {key!r}")
        return path

    def _publish(self, key: str, write) -> None:
        target = self.path_for(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self.partial_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.partial_dir, prefix="upload-")
        except OSError as exc:
            raise StorageError(f"cannot write to {target.parent}: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.link(tmp, target)
        except FileExistsError as exc:
            raise ObjectExists(key) from exc
        except OSError as exc:
            raise StorageError(f"cannot write {key}: {exc}") from exc
        finally:
            os.unlink(tmp)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self._publish(key, lambda fh: fh.write(data))

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        with open(path, "rb") as src:
            self._publish(key, lambda fh: shutil.copyfileobj(src, fh, 1024 * 1024))

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.path_for(key).read_bytes()
        except FileNotFoundError as exc:
            raise ObjectMissing(key) from exc

    def download(self, key: str, path: Path) -> None:
        try:
            shutil.copyfile(self.path_for(key), path)
        except FileNotFoundError as exc:
            raise ObjectMissing(key) from exc

    def download_to(self, key: str, target: BinaryIO) -> None:
        try:
            with self.path_for(key).open("rb") as source:
                shutil.copyfileobj(source, target, 8 * 1024 * 1024)
        except FileNotFoundError as exc:
            raise ObjectMissing(key) from exc

    def delete(self, key: str) -> None:
        try:
            self.path_for(key).unlink(missing_ok=True)
        except OSError as exc:  # e.g. permissions: a storage failure callers handle, not a crash
            raise StorageError(f"cannot delete {key}: {exc}") from exc

    def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

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
                yield StoredObject(key, datetime.fromtimestamp(modified, UTC))

    def presigned_url(self, key: str, expires_in: int, filename: str, content_type: str) -> str | None:
        return None

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".ready-"):
                pass
        except OSError as exc:
            raise StorageError(f"storage folder {self.root} is not writable: {exc}") from exc

    def remove_stale_partials(self, older_than_seconds: float) -> int:
        """Delete partial files of writes that were interrupted (killed process); returns how many."""
        if not self.partial_dir.is_dir():
            return 0
        cutoff = time.time() - older_than_seconds
        removed = 0
        for path in self.partial_dir.iterdir():
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed
