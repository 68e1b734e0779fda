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


def make_storage(settings: Settings) -> Storage:
    if settings.storage == "s3":
        return S3Storage(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
            multipart_threshold_mb=settings.s3_multipart_threshold_mb,
            public_endpoint_url=settings.s3_public_endpoint_url,
        )
    return LocalStorage(settings.storage_dir)


__all__ = ["BANDS", "INPUTS", "PREFIXES", "RESULTS", "LocalStorage", "ObjectExists", "ObjectMissing", "S3Storage",
           "Storage", "StorageError", "StoredObject", "make_storage", "new_key"]
