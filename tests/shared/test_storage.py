import hashlib
import http.client
import io
import os
import stat
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from shared.storage import LocalStorage, ObjectExists, ObjectMissing, S3Storage, StorageError, new_key
from shared.storage.base import InvalidKey


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
    assert response.headers["Content-Disposition"] == 'attachment; filename="x.png"'
    named = requests.get(s3_storage.presigned_url("inputs/j/x.png", 60, "写真_x2.png", "image/png"), timeout=10)
    assert named.headers["Content-Disposition"] == \
        "attachment; filename=\"_x2.png\"; filename*=UTF-8''%E5%86%99%E7%9C%9F_x2.png"  # RFC 6266: ASCII bytes
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
def test_each_backend_says_itself_whether_the_api_serves_an_objects_bytes(kind, request, tmp_path):
    """Routes and the sweeper asked ``isinstance(storage, LocalStorage)``: the backend answers instead."""
    storage = LocalStorage(tmp_path / "s") if kind == "local" else request.getfixturevalue("s3_storage")
    storage.put_bytes("results/a.png", b"png", "image/png")
    served = storage.served_path("results/a.png")
    assert (served.read_bytes() == b"png") if kind == "local" else served is None
    assert storage.remove_stale_partials(older_than_seconds=0) == 0  # no interrupted write here


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


def test_an_s3_listing_answered_short_of_a_page_with_more_to_come_is_read_on(s3_storage):
    """S3 may answer a listing with fewer keys than asked and more to come (IsTruncated: a versioned bucket's delete
    markers, some S3-compatible stores). A short page is the prefix's end to the orphan sweep, which then moved on
    to the next prefix: every object past the short page was never read, and an orphan there stayed for good. The
    store here answers its first listing short, as such a store would."""
    from worker.orphans import next_page

    keys = [f"inputs/0ff/{index:02d}.png" for index in range(6)]
    for key in keys:
        s3_storage.put_bytes(key, b"x", "image/png")
    real = s3_storage.client.list_objects_v2
    calls = []

    def short_first(**request):
        calls.append(request)
        return real(**{**request, "MaxKeys": 2}) if len(calls) == 1 else real(**request)

    s3_storage.client.list_objects_v2 = short_first
    assert [stored.key for stored in s3_storage.list_objects("inputs/", "", 5)] == keys[:5]
    assert len(calls) == 2 and calls[1]["MaxKeys"] == 3
    calls.clear()
    page, after = next_page(s3_storage, "inputs/", 5)
    assert (len(page), after) == (5, keys[4])  # read on from the page's last key, still in inputs/


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_a_listed_objects_age_is_told_by_the_stores_own_clock(kind, request, tmp_path):
    """The orphan sweep took an object's age against the worker's clock: a worker an hour ahead of the store
    would delete an upload whose job row was being written. On S3 the age is the listing's answer time (its
    ``Date``) minus the object's stamp, both the store's: a store that answers two hours later than it stamped
    the object lists it two hours old, whatever this machine's clock says (a botocore hook moves the answer's
    ``Date``, as a store with its own clock would send it)."""
    from email.utils import format_datetime, parsedate_to_datetime

    storage = LocalStorage(tmp_path / "s") if kind == "local" else request.getfixturevalue("s3_storage")
    storage.put_bytes("inputs/0ff/fresh.png", b"x", "image/png")
    [fresh] = storage.list_objects("inputs/", "", 10)
    assert timedelta(0) <= fresh.age < timedelta(minutes=1)
    if kind == "local":
        return

    def later(http_response, parsed, **_kwargs):
        headers = parsed["ResponseMetadata"]["HTTPHeaders"]
        headers["date"] = format_datetime(parsedate_to_datetime(headers["date"]) + timedelta(hours=2), usegmt=True)

    storage.client.meta.events.register("after-call.s3.ListObjectsV2", later)
    [aged] = storage.list_objects("inputs/", "", 10)
    assert timedelta(hours=1, minutes=59) < aged.age < timedelta(hours=2, minutes=1)


BAD_KEYS = ["a//b.png", "a/./b.png", "../escape.png", "/abs/x.png", ".partial/x", "inputs/.hidden", "a/b/",
            "nul\x00.png", "tab\t.png", "/".join(["k" * 200] * 6), "inputs/" + "k" * 256, ""]


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_both_backends_refuse_the_same_keys_as_names_of_nothing(kind, request, tmp_path):
    """``a//b`` and ``a/b`` were one local file but two S3 objects; ``../x`` and ``/x`` were stored by S3 and
    refused locally; a NUL or an over-long key was a raw ValueError/OSError (a 500 through a signed link)."""
    storage = LocalStorage(tmp_path / "s") if kind == "local" else request.getfixturevalue("s3_storage")
    for key in BAD_KEYS:
        with pytest.raises(InvalidKey):
            storage.put_bytes(key, b"x", "image/png")
        with pytest.raises(ObjectMissing):
            storage.get_bytes(key)
        assert not storage.exists(key)
    long_key = "inputs/" + "/".join(["k" * 255] * 3) + "/" + "k" * 249  # up to S3's 1,024 bytes: fine
    storage.put_bytes(long_key, b"x", "image/png")
    assert len(long_key) == 1024 and storage.get_bytes(long_key) == b"x"


def test_local_read_failures_are_storage_errors_not_raw_os_errors(tmp_path):
    """A permission or I/O error reading a stored file was a raw OSError: the worker failed the job
    ``internal_error`` for good (S3's AccessDenied is an outage it waits out) and the API answered 500. /proc's
    ``mem`` answers every read with EIO, as a failing disk does, whoever runs the test."""
    storage = LocalStorage(Path("/proc/self"))
    with pytest.raises(StorageError) as caught:
        storage.get_bytes("mem")
    assert not isinstance(caught.value, ObjectMissing)
    with pytest.raises(StorageError), (tmp_path / "copy").open("wb") as fh:
        storage.download_to("mem", fh)


def test_local_objects_are_readable_by_the_umask_not_only_their_writer(tmp_path):
    """mkstemp made every object 0600: an API and a worker running as two users could not read each other's."""
    old = os.umask(0o022)
    try:
        storage = LocalStorage(tmp_path / "s")
        storage.put_bytes("inputs/0ab/x.png", b"x", "image/png")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "s" / "inputs/0ab/x.png").stat().st_mode) == 0o644


def test_local_readiness_fails_when_the_disk_cannot_take_a_write(tmp_path):
    """An empty probe file is still created on a full disk: /readyz said ok while every submit answered 503. A
    file-size limit below the probe's size stands in for the full disk."""
    script = ("import resource, signal, sys; from pathlib import Path; from shared.storage import LocalStorage, "
              "StorageError\nsignal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))\n"
              "try:\n    LocalStorage(Path(sys.argv[1])).check()\n"
              "except StorageError as exc:\n    print('refused', exc)\nelse:\n    print('ready')\n")
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "s")], capture_output=True, text=True,
                         cwd=Path(__file__).parents[2], timeout=60)
    assert run.stdout.startswith("refused") and "File too large" in run.stdout, run.stdout + run.stderr
    LocalStorage(tmp_path / "s").check()  # without the limit: ready


class _CuttingProxy(ThreadingHTTPServer):
    """Loopback HTTP in front of moto that cuts the body of every GET of a ``bands/`` key in half, then closes:
    a connection reset mid-download."""

    def __init__(self, upstream: str):
        self.upstream = upstream.removeprefix("http://")
        super().__init__(("127.0.0.1", 0), _CuttingHandler)


class _CuttingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        connection = http.client.HTTPConnection(self.server.upstream, timeout=30)
        connection.request(self.command, self.path, body=self.rfile.read(length) if length else None,
                           headers={k: v for k, v in self.headers.items() if k.lower() != "connection"})
        response = connection.getresponse()
        data = response.read()
        cut = self.command == "GET" and "/bands/" in self.path and response.status in (200, 206)
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data[:len(data) // 2] if cut else data)
        self.close_connection = cut

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay


def test_an_s3_download_cut_off_midway_is_an_outage_on_every_read_path(s3, s3_storage, tmp_path):
    """s3transfer's own RetriesExceededError (download_fileobj, how a split job gathers its bands) was let
    through unwrapped: a connection reset mid-band failed the job ``internal_error`` for good."""
    proxy = _CuttingProxy(s3.endpoint)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        s3_storage.put_bytes("bands/0ab/b.raw", os.urandom(200_000), "application/octet-stream")
        via = S3Storage(s3_storage.bucket, f"http://127.0.0.1:{proxy.server_port}", access_key_id="k",
                        secret_access_key="s")
        for read in (lambda: via.download("bands/0ab/b.raw", tmp_path / "band"),
                     lambda: via.download_to("bands/0ab/b.raw", io.BytesIO()),
                     lambda: via.get_bytes("bands/0ab/b.raw")):
            with pytest.raises(StorageError) as caught:
                read()
            assert not isinstance(caught.value, ObjectMissing)
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_a_link_lives_at_most_as_long_as_s3_can_sign_one(s3_settings, db_session):
    """A webhook's link outlives its retries (result_url_ttl plus the schedule): over SigV4's 7 days S3 refused it."""
    from shared.job_view import result_link
    from shared.storage import make_storage
    from tests.factories import make_job

    job = make_job(db_session, status="succeeded", output_key="results/0ab/r.png")
    url, expires = result_link(job, make_storage(s3_settings), s3_settings, "http://127.0.0.1", ttl=700_000)
    assert "X-Amz-Expires=604800" in url
    assert abs((expires - datetime.now(UTC)).total_seconds() - 604_800) < 60
    url, _ = result_link(job, LocalStorage(s3_settings.storage_dir), s3_settings, "http://127.0.0.1", ttl=700_000)
    assert "expires=" in url  # the API signs its own links for any life


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_a_links_stated_expiry_is_never_later_than_the_link_works(kind, s3_settings, db_session):
    """``result_url_expires_at`` was read with its fraction of a second, the link signed in whole seconds: it said
    the link lived up to a second longer than it did (a use in that second was 410 link_expired, or S3's refusal).
    Stated now in whole seconds: a local link's own ``expires``; never later than S3's date and life."""
    from urllib.parse import parse_qs, urlsplit

    from shared.job_view import result_link
    from shared.storage import make_storage
    from tests.factories import make_job

    job = make_job(db_session, status="succeeded", output_key="results/0ab/r.png")
    storage = make_storage(s3_settings) if kind == "s3" else LocalStorage(s3_settings.storage_dir)
    for _ in range(5):
        url, stated = result_link(job, storage, s3_settings, "http://127.0.0.1", ttl=60)
        query = {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}
        if kind == "local":
            assert stated == datetime.fromtimestamp(int(query["expires"]), UTC)
        else:
            signed = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            assert stated <= signed + timedelta(seconds=int(query["X-Amz-Expires"]))
        assert stated.microsecond == 0
