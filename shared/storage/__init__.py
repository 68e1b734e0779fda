"""Object storage behind one small interface; ``make_storage`` picks the backend from settings."""

from shared.settings import Settings
from shared.storage.base import (
    BANDS,
    INPUTS,
    PREFIXES,
    RESULTS,
    ObjectExists,
    ObjectMissing,
    Storage,
    StorageError,
    StoredObject,
    new_key,
)
from shared.storage.local import LocalStorage
from shared.storage.s3 import S3Storage

# What one S3 call may take where a client of the API waits on it: 2 tries of (3 s connect + 10 s read), 26 s at
# most. With a worker's 3 of 30 s, a hung store held an upload's request thread 93 s.
API_S3_CALLS = {"attempts": 2, "read_timeout": 10}


def make_storage(settings: Settings, *, for_api: bool = False) -> Storage:
    """The configured backend; ``for_api``: the API's, whose S3 calls give up sooner (``API_S3_CALLS``)."""
    if settings.storage == "s3":
        return S3Storage(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
            multipart_threshold_mb=settings.s3_multipart_threshold_mb,
            public_endpoint_url=settings.s3_public_endpoint_url,
            **(API_S3_CALLS if for_api else {}),
        )
    return LocalStorage(settings.storage_dir)


__all__ = ["BANDS", "INPUTS", "PREFIXES", "RESULTS", "LocalStorage", "ObjectExists", "ObjectMissing", "S3Storage",
           "Storage", "StorageError", "StoredObject", "make_storage", "new_key"]
