import hashlib
import os

import pytest
import requests

from shared.storage import LocalStorage, ObjectExists, ObjectMissing, S3Storage, StorageError, new_key


def test_keys_are_unguessable_and_unique():
    keys = {new_key("inputs", "png") for _ in range(1000)}
    assert len(keys) == 1000
    assert all(k.startswith("inputs/") and k.endswith(".png") and k.count("/") == 2 for k in keys)
    folders = {k.split("/")[1] for k in keys}
    assert 150 < len(folders) <= 1000 and all(len(f) == 3 for f in folders)  # spread over a fixed set of folders
    assert len({k.split("/")[2] for k in keys}) == 1000  # the name alone is unique, naming no job or tenant


def test_local_round_trip_and_no_overwrite(tmp_path):
    storage = LocalStorage(tmp_path / "s")
    storage.put_bytes("a/b.bin", b"hello", "application/octet-stream")
    assert storage.get_bytes("a/b.bin") == b"hello"
    with pytest.raises(ObjectExists):
        storage.put_bytes("a/b.bin", b"other", "application/octet-stream")
    assert storage.get_bytes("a/b.bin") == b"hello"
    assert list((tmp_path / "s" / ".partial").iterdir()) == []
    storage.delete("a/b.bin")
    assert not storage.exists("a/b.bin")
    with pytest.raises(ObjectMissing):
        storage.get_bytes("a/b.bin")
    assert storage.presigned_url("a/b.bin", 60, "b.bin", "x/y") is None


def test_partial_files_of_killed_writes_are_removed_when_stale(tmp_path):
    storage = LocalStorage(tmp_path / "s")
    storage.put_bytes("a/b", b"x", "text/plain")
    stale = storage.partial_dir / "upload-dead"
    stale.write_bytes(b"half")
    os.utime(stale, (0, 0))
    fresh = storage.partial_dir / "upload-writing"
    fresh.write_bytes(b"in progress")
    assert storage.remove_stale_partials(older_than_seconds=3600) == 1
    assert not stale.exists() and fresh.exists()


def test_local_refuses_keys_outside_its_root(tmp_path):
    storage = LocalStorage(tmp_path / "s")
    with pytest.raises(StorageError):
        storage.put_bytes("../escape", b"x", "text/plain")


def test_local_check_fails_when_root_is_unusable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError):
        LocalStorage(blocker / "s").check()


@pytest.fixture
def s3_storage(s3):
    storage = S3Storage(f"b-{os.urandom(4).hex()}", s3.endpoint, access_key_id="k", secret_access_key="s",
                        multipart_threshold_mb=5)
    storage.ensure_bucket()
    return storage


def test_s3_round_trip_presigned_and_delete(s3_storage, tmp_path):
    s3_storage.check()
    s3_storage.put_bytes("inputs/j/x.png", b"\x89PNG data", "image/png")
    assert s3_storage.exists("inputs/j/x.png")
    assert s3_storage.get_bytes("inputs/j/x.png") == b"\x89PNG data"
    url = s3_storage.presigned_url("inputs/j/x.png", 60, "x.png", "image/png")
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=60" in url
    response = requests.get(url, timeout=10)
    assert response.status_code == 200 and response.content == b"\x89PNG data"
    s3_storage.delete("inputs/j/x.png")
    assert not s3_storage.exists("inputs/j/x.png")
    with pytest.raises(ObjectMissing):
        s3_storage.download("inputs/j/x.png", tmp_path / "gone")


def test_s3_multipart_upload_of_a_big_object(s3_storage, tmp_path):
    big = tmp_path / "big.bin"
    payload = os.urandom(12 * 1024 * 1024)
    big.write_bytes(payload)
    s3_storage.put_file("results/j/big.bin", big, "application/octet-stream")
    head = s3_storage.client.head_object(Bucket=s3_storage.bucket, Key="results/j/big.bin")
    assert head["ETag"].strip('"').endswith("-3")  # three 5 MB parts: a multipart upload
    s3_storage.download("results/j/big.bin", tmp_path / "back.bin")
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).digest() == hashlib.sha256(payload).digest()


def test_a_missing_bucket_is_an_outage_not_a_missing_object(s3, s3_storage, tmp_path):
    """HeadObject in a bucket that does not exist answers a bare 404: read as "the input is missing", a misnamed
    bucket failed every job for good (input_missing) instead of being retried as an outage (storage_failed)."""
    misnamed = S3Storage(f"{s3_storage.bucket}-typo", s3.endpoint, access_key_id="k", secret_access_key="s")
    for call in (lambda: misnamed.download("inputs/a/x.png", tmp_path / "x"), misnamed.check,
                 lambda: misnamed.get_bytes("inputs/a/x.png")):
        with pytest.raises(StorageError, match="does not exist") as raised:
            call()
        assert not isinstance(raised.value, ObjectMissing)
    with pytest.raises(ObjectMissing):  # a missing key in a bucket that is there stays what it is
        s3_storage.download("inputs/a/never.png", tmp_path / "y")


def test_deleting_a_key_aborts_an_upload_of_it_that_never_finished(s3_storage):
    """A worker killed mid-upload leaves parts that are no object: delete_object missed them, and they stayed
    stored (and billed) for good. Another key's unfinished upload, sharing the prefix, is left alone."""
    client, bucket = s3_storage.client, s3_storage.bucket
    for key in ("results/j/r.png", "results/j/r.png.other"):
        upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        client.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=os.urandom(5 * 1024 * 1024))
    s3_storage.delete("results/j/r.png")
    left = [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    assert left == ["results/j/r.png.other"]


def test_an_s3_upload_that_fails_is_a_storage_error_not_a_crash(s3, tmp_path):
    """boto3's managed upload wraps the server's answer in its own exception (S3UploadFailedError); it once
    escaped as an internal error instead of the job's storage_failed."""
    missing = S3Storage(f"never-made-{os.urandom(4).hex()}", s3.endpoint, access_key_id="k", secret_access_key="s")
    (tmp_path / "r.png").write_bytes(b"\x89PNG data")
    with pytest.raises(StorageError, match="transfer failed"):
        missing.put_file("results/a/r.png", tmp_path / "r.png", "image/png")


def test_a_local_delete_that_the_system_refuses_is_a_storage_error(tmp_path):
    storage = LocalStorage(tmp_path / "s")
    (tmp_path / "s" / "a" / "b.bin").mkdir(parents=True)  # the system refuses to unlink it (even for root)
    with pytest.raises(StorageError, match="cannot delete"):
        storage.delete("a/b.bin")


def test_s3_unreachable_is_a_storage_error():
    storage = S3Storage("b", "http://127.0.0.1:9", access_key_id="k", secret_access_key="s")
    with pytest.raises(StorageError):
        storage.check()


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_download_to_appends_an_object_where_the_file_stands(kind, request, tmp_path):
    """How a split job's assembler gathers band files into one: part after part, nothing overwritten."""
    storage = LocalStorage(tmp_path / "s") if kind == "local" else request.getfixturevalue("s3_storage")
    big = os.urandom(6 * 1024 * 1024 + 123)  # over S3's multipart threshold: parts arrive in any order
    storage.put_bytes("bands/x.raw", big, "application/octet-stream")
    target = tmp_path / "rows"
    with target.open("wb") as fh:
        fh.write(b"header")
        storage.download_to("bands/x.raw", fh)
        storage.download_to("bands/x.raw", fh)
    assert target.read_bytes() == b"header" + big + big
    with pytest.raises(ObjectMissing), (tmp_path / "other").open("wb") as fh:
        storage.download_to("bands/missing.raw", fh)


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_both_backends_list_a_prefix_in_key_order_a_page_at_a_time(kind, request, tmp_path):
    """The orphan sweep's paging: the same keys, order and pages from either backend (S3's ListObjectsV2 order:
    ``a.png`` before ``a/x``), other prefixes and the local folder's own dot-files left out."""
    storage = LocalStorage(tmp_path / "s") if kind == "local" else request.getfixturevalue("s3_storage")
    keys = ["inputs/0ff/b.png", "inputs/0ff/a.png", "inputs/100/z.jpg", "inputs/0ff.png", "inputs/0ff/a/deep.png",
            "results/0ff/r.png", "inputsx/0ff/n.png"]
    for key in keys:
        storage.put_bytes(key, b"x", "image/png")
    if kind == "local":
        (tmp_path / "s" / "inputs" / ".ready-probe").write_bytes(b"")
    expected = ["inputs/0ff.png", "inputs/0ff/a.png", "inputs/0ff/a/deep.png", "inputs/0ff/b.png", "inputs/100/z.jpg"]
    listed = storage.list_objects("inputs/", "", 100)
    assert [stored.key for stored in listed] == expected
    assert all(stored.modified.tzinfo is not None for stored in listed)
    pages, after = [], ""
    while page := storage.list_objects("inputs/", after, 2):
        pages.append([stored.key for stored in page])
        after = page[-1].key
    assert pages == [expected[:2], expected[2:4], expected[4:]]
    assert [s.key for s in storage.list_objects("inputs/", "inputs/0ff/a.png", 100)] == expected[2:]
    assert storage.list_objects("bands/", "", 100) == []
