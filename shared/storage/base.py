"""The small storage interface both backends implement, and how object keys are made."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Protocol


class StorageError(RuntimeError):
    """A storage backend failed or is unreachable."""


class ObjectMissing(StorageError):
    """The requested object does not exist."""


class InvalidKey(ObjectMissing):
    """A key no object can have (``check_key``): nothing is stored under it, so reading it is a missing object."""


class ObjectExists(StorageError):
    """Refused to overwrite an existing object (nothing is ever overwritten in place)."""


FOLDERS = 4096  # a key's first part: one of this many folders per prefix

# What the product stores, by the first part of a key: every object the API or a worker writes is under one of
# these, and each is named by a row (jobs.input_key; jobs.output_key or staged_output_key; job_bands.result_key).
# The orphan sweep (worker.orphans) reads only these, so other data in a shared bucket is never touched.
INPUTS, RESULTS, BANDS = "inputs", "results", "bands"
PREFIXES = (BANDS, INPUTS, RESULTS)  # in key order


@dataclass(frozen=True)
class StoredObject:
    key: str
    modified: datetime  # timezone-aware (UTC), by the store's clock
    # how long ago by the store's own clock (the listing's answer time on S3): an age taken against this machine's
    # clock took a fresh upload for an hour old where the two clocks were an hour apart (the orphan sweep's test)
    age: timedelta


def new_key(prefix: str, extension: str) -> str:
    """An unguessable, never-reused key such as ``inputs/a3f/<random>.png``.

    It names neither the job nor the tenant: a leaked link tells nothing about whose or which job it is.
    The first part spreads objects over a fixed set of folders, so a local-storage directory never holds
    millions of files and deleted objects leave no folder behind each (144 random bits in the name keep the
    key unguessable)."""
    return f"{prefix}/{secrets.randbelow(FOLDERS):03x}/{secrets.token_urlsafe(18)}.{extension}"


MAX_KEY_BYTES = 1024  # S3's limit
MAX_PART_BYTES = 255  # a file name's, in every Linux file system


def check_key(key: str) -> str:
    """``key`` if both backends can store it as the same object, else ``InvalidKey``: what S3 would store and a
    folder could not (``a//b``, ``a/./b`` and ``a/b`` are one file but three S3 keys; ``../x`` leaves the folder;
    a NUL, a 1,025-byte key or a 256-byte part is an OS error), and dot-names, which the local backend keeps for itself
    (``.partial/``). The keys ``new_key`` makes always pass; a signed link may name anything."""
    parts = key.split("/")
    if (not key or len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES
            or any(not part or part.startswith(".") or len(part.encode("utf-8", "surrogatepass")) > MAX_PART_BYTES
                   for part in parts)
            or any(ord(char) < 32 or ord(char) == 127 for char in key)):
        raise InvalidKey(f"invalid key {key!r}")
    return key


class Storage(Protocol):
    """Put, get, delete and link objects. Implementations: ``LocalStorage``, ``S3Storage``."""

    max_link_seconds: int | None  # the longest life ``presigned_url`` can give a link (None: no limit)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...

    def put_file(self, key: str, path: Path, content_type: str) -> None: ...

    def get_bytes(self, key: str) -> bytes: ...

    def download(self, key: str, path: Path) -> None: ...

    def download_to(self, key: str, target: BinaryIO) -> None:
        """Stream an object into an open binary file (appended at its position, never whole in memory)."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key`` and anything an interrupted upload of it left; a missing key is no error."""
        ...

    def exists(self, key: str) -> bool: ...

    def list_objects(self, prefix: str, start_after: str, limit: int) -> list[StoredObject]:
        """Up to ``limit`` objects whose keys start with ``prefix`` and sort after ``start_after``, in key order
        (S3's ListObjectsV2 order), fewer only where the prefix ends: a caller pages through a store by passing the
        last key it got."""
        ...

    def presigned_url(self, key: str, expires_in: int, filename: str, content_type: str) -> str | None:
        """A direct download URL, or None when the API must serve the object itself (local)."""
        ...

    def check(self) -> None:
        """Raise ``StorageError`` unless the backend is reachable and usable (readiness)."""
        ...

    def served_path(self, key: str) -> Path | None:
        """The file the API itself sends for ``key`` (a local folder), or None where the store serves its own
        links (S3): the one answer routes ask, instead of which backend they hold."""
        ...

    def remove_stale_partials(self, older_than_seconds: float) -> int:
        """Remove what writes interrupted by a killed process left, older than ``older_than_seconds``; returns how
        many. An S3 bucket keeps no such files of ours (its incomplete multipart uploads are a lifecycle rule's:
        docs/deploy.md)."""
        ...
