"""Any S3-compatible object store (AWS S3, MinIO, R2, Ceph) through boto3.

Big objects go through boto3's managed transfer (multipart above a threshold, parallel parts);
downloads for clients are presigned GET URLs so result bytes never pass through the API.
"""

from __future__ import annotations

import logging
import unicodedata
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.exceptions import RetriesExceededError, S3DownloadFailedError, S3UploadFailedError

from shared.settings import MAX_PRESIGNED_SECONDS
from shared.storage.base import ObjectMissing, StorageError, StoredObject, check_key

MB = 1024 * 1024


log = logging.getLogger(__name__)


class S3Storage:
    # SigV4: S3 refuses a presigned link that lives longer (shared.job_view.result_link cuts a link's life to it)
    max_link_seconds: int | None = MAX_PRESIGNED_SECONDS

    def __init__(self, bucket: str, endpoint_url: str | None = None, region: str = "us-east-1",
                 access_key_id: str | None = None, secret_access_key: str | None = None,
                 multipart_threshold_mb: int = 16, public_endpoint_url: str | None = None,
                 attempts: int = 3, read_timeout: int = 30):
        """``attempts`` and ``read_timeout`` bound how long one call may wait on a store that accepts connections
        and never answers (``make_storage``: a worker's step may wait longer than a client of the API)."""
        self.bucket = bucket

        def client(endpoint: str | None, attempts: int = attempts, read_timeout: int = read_timeout):
            return boto3.client(
                "s3",
                endpoint_url=endpoint or None,
                region_name=region,
                aws_access_key_id=access_key_id or None,
                aws_secret_access_key=secret_access_key or None,
                # a store that accepts connections and never answers: 3 tries of 30 s stay within the sweep's and
                # a job step's time limits (4 of 60 s held a call 240 s, past the sweep's 120 s soft limit)
                config=Config(signature_version="s3v4", retries={"total_max_attempts": attempts, "mode": "standard"},
                              connect_timeout=3, read_timeout=read_timeout, s3={"addressing_style": "path"}),
            )

        self.client = client(endpoint_url)
        # readiness answers within a probe's 5 s: through the client above a hung store held /readyz 90 s, and
        # probes piling up took every API thread, /healthz's too, so liveness restarted every pod
        self.probe = client(endpoint_url, attempts=1, read_timeout=2)
        # Presigned URLs must name a host clients can reach (e.g. MinIO's public address, not "minio:9000");
        # signing is local, so this client never connects anywhere.
        self.signer = client(public_endpoint_url) if public_endpoint_url else self.client
        self.transfer = TransferConfig(multipart_threshold=multipart_threshold_mb * MB,
                                       multipart_chunksize=max(multipart_threshold_mb, 5) * MB, max_concurrency=4)

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            # a bare 404 (HeadObject, HeadBucket) is a missing key only where the bucket is there: a missing or
            # misnamed bucket read as "input missing" failed every job for good instead of being an outage
            of_bucket = fn in (self.client.head_bucket, self.probe.head_bucket)
            if code == "NoSuchKey" or (code in ("404", "NotFound") and not of_bucket and self._bucket_exists()):
                raise ObjectMissing(str(kwargs.get("Key", args[1] if len(args) > 1 else ""))) from exc
            if code in ("NoSuchBucket", "404", "NotFound"):
                raise StorageError(f"S3 bucket {self.bucket!r} does not exist") from exc
            raise StorageError(f"S3 error: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 unreachable: {exc}") from exc
        # managed transfers raise their own errors: boto3's for upload_file and download_file, s3transfer's for
        # download_fileobj (a body cut off mid-band failed a split job internal_error instead of waiting it out)
        except (Boto3Error, RetriesExceededError, S3DownloadFailedError, S3UploadFailedError) as exc:
            raise StorageError(f"S3 transfer failed: {exc}") from exc

    def _bucket_exists(self) -> bool:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchBucket", "404", "NotFound"):
                return False
            raise StorageError(f"S3 error: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 unreachable: {exc}") from exc
        return True

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self._call(self.client.put_object, Bucket=self.bucket, Key=check_key(key), Body=data, ContentType=content_type)

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        self._call(self.client.upload_file, str(path), self.bucket, check_key(key),
                   ExtraArgs={"ContentType": content_type}, Config=self.transfer)

    def get_bytes(self, key: str) -> bytes:
        # the body is read inside _call: a connection cut mid-body is an outage too, not a raw botocore error
        return self._call(lambda **request: self.client.get_object(**request)["Body"].read(), Bucket=self.bucket,
                          Key=check_key(key))

    def download(self, key: str, path: Path) -> None:
        self._call(self.client.download_file, self.bucket, check_key(key), str(path), Config=self.transfer)

    def download_to(self, key: str, target: BinaryIO) -> None:
        # Only ``write``: s3transfer then writes parts in order at the file's position instead of seeking
        # to each part's offset from the start of the file (which would overwrite what is before it).
        self._call(self.client.download_fileobj, self.bucket, check_key(key), _Appender(target), Config=self.transfer)

    def delete(self, key: str) -> None:
        """Delete the object and any multipart upload of ``key`` left unfinished: a worker killed while uploading
        a large result or band leaves its parts, which are no object (``delete_object`` misses them) but are
        stored and billed until aborted."""
        self._call(self.client.delete_object, Bucket=self.bucket, Key=check_key(key))
        try:  # best effort once the object is gone: a policy without the multipart permissions must not make
            # every delete fail (retention would stall on the same jobs); the bucket's lifecycle rule is the net
            listing = self._call(self.client.list_multipart_uploads, Bucket=self.bucket, Prefix=key)
            for upload in listing.get("Uploads", []):
                if upload["Key"] == key:
                    self._call(self.client.abort_multipart_upload, Bucket=self.bucket, Key=key,
                               UploadId=upload["UploadId"])
        except StorageError as exc:
            log.warning("deleted %s; could not abort an unfinished upload of it: %s", key, exc)

    def exists(self, key: str) -> bool:
        try:
            self._call(self.client.head_object, Bucket=self.bucket, Key=check_key(key))
            return True
        except ObjectMissing:
            return False

    def list_objects(self, prefix: str, start_after: str, limit: int) -> list[StoredObject]:
        """Read on while S3 says there is more (``IsTruncated``) and the page is not full: S3 may answer short of
        ``MaxKeys`` with more to come (a versioned bucket's delete markers, some S3-compatible stores), and a short
        page means the prefix's end to the orphan sweep (``worker.orphans.next_page``), which then moved on to the
        next prefix and never read, nor deleted, what lay past it."""
        found: list[StoredObject] = []
        request = {"Bucket": self.bucket, "Prefix": prefix, "StartAfter": start_after}
        while True:
            listing = self._call(self.client.list_objects_v2, **request, MaxKeys=limit - len(found))
            answered = _answered_at(listing)
            found += [StoredObject(item["Key"], item["LastModified"], answered - item["LastModified"])
                      for item in listing.get("Contents", [])]
            if len(found) >= limit or not listing.get("IsTruncated") or not listing.get("NextContinuationToken"):
                return found[:limit]
            request["ContinuationToken"] = listing["NextContinuationToken"]

    def served_path(self, key: str) -> Path | None:
        """None: the bucket serves its own presigned links."""
        return None

    def remove_stale_partials(self, older_than_seconds: float) -> int:
        """Nothing to remove: an interrupted upload leaves no object (its multipart parts are the bucket's
        lifecycle rule's to expire)."""
        return 0

    def presigned_url(self, key: str, expires_in: int, filename: str, content_type: str) -> str | None:
        # through _call: signing needs credentials, and a role whose refresh failed (NoCredentialsError) was a 500
        # on every read of a succeeded job, and failed a finished job whose webhook payload carries the link
        return self._call(
            self.signer.generate_presigned_url,
            "get_object",
            Params={"Bucket": self.bucket, "Key": check_key(key), "ResponseContentType": content_type,
                    "ResponseContentDisposition": attachment(filename)},
            ExpiresIn=expires_in,
        )

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (dev stacks and tests; production buckets pre-exist)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self._call(self.client.create_bucket, Bucket=self.bucket)

    def check(self) -> None:
        self._call(self.probe.head_bucket, Bucket=self.bucket)


class _Appender:
    """A write-only view of a file: appends wherever the file stands."""

    def __init__(self, target: BinaryIO):
        self.write = target.write


def _answered_at(response: dict) -> datetime:
    """When the store answered, by its own clock (the HTTP ``Date`` header, to the second; this machine's clock
    where a server sends none)."""
    sent = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        return parsedate_to_datetime(sent).astimezone(UTC) if sent else datetime.now(UTC)
    except (TypeError, ValueError):
        return datetime.now(UTC)


def attachment(filename: str) -> str:
    """A ``Content-Disposition`` saving as ``filename`` (RFC 6266): an ASCII fallback, and the name itself in
    ``filename*`` where it is not ASCII (a header carries no other bytes; Flask writes the same for the local
    backend)."""
    fallback = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode().replace('"', "")
    if fallback == filename:
        return f'attachment; filename="{filename}"'
    return f'attachment; filename="{fallback or "download"}"; filename*=UTF-8\'\'{quote(filename, safe="")}'
