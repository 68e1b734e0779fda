"""``image_url`` inputs: fetched by the worker through the pinned SSRF guard, capped and sniffed.

Every server here is on 127.0.0.1 (with the allow-private setting on); refusals are checked before any
connection is made.
"""

from __future__ import annotations

import http.server
import io
import threading
import time

import pytest
from PIL import Image

from shared.models import Job
from tests.conftest import image_bytes
from tests.dns import no_connections, one_internal_name
from tests.factories import outage_wait_over
from worker import pipeline


class LoopbackServer:
    """An HTTP server on 127.0.0.1 in a thread, answering with ``handler`` (a quiet BaseHTTPRequestHandler)."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]):
        handler.log_message = lambda *args: None
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ImageServer(LoopbackServer):
    """Serves GET routes on loopback: path -> (status, headers, body)."""

    def __init__(self, routes: dict[str, tuple[int, dict[str, str], bytes]]):
        self.hits: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(handler):
                self.hits.append(handler.path)
                status, headers, body = routes.get(handler.path, (404, {}, b"not here"))
                handler.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    handler.send_header(name, value)
                handler.end_headers()
                handler.wfile.write(body)

        super().__init__(Handler)


@pytest.fixture
def server():
    photo = image_bytes(width=40, height=30, fmt="JPEG", quality=80)
    routes = {"/photo.jpg": (200, {"Content-Type": "image/jpeg"}, photo),
              "/hop": (302, {"Location": "/photo.jpg"}, b""),
              "/to-metadata": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
              "/loop": (302, {"Location": "/loop"}, b""),
              "/big.png": (200, {}, image_bytes(width=600, height=600)),
              "/page.html": (200, {"Content-Type": "text/html"}, b"<html>hello</html>")}
    running = ImageServer(routes)
    yield running
    running.close()


def run_to_failure(settings, db_session, job_id) -> Job:
    """Run the job in a worker of these settings; it must fail: the job row, as the worker left it."""
    from worker.context import WorkerContext

    worker = WorkerContext.create(settings)
    try:
        assert pipeline.run_job(worker, job_id) == "failed"
    finally:
        worker.engine.dispose()
    return db_session.get(Job, job_id)


def submit_url(client, url, **fields):
    return client.post("/v1/jobs", data={"image_url": url, "scale": "2", "model": "bicubic", **fields},
                       content_type="multipart/form-data")


@pytest.mark.parametrize("path", ["/photo.jpg", "/hop"])
def test_a_url_input_is_fetched_and_upscaled(client, ctx, db_session, server, path):
    response = submit_url(client, server.base + path)
    body = response.get_json()
    assert response.status_code == 202, body
    assert body["input"]["url"] == server.base + path and body["input"]["width"] is None
    assert pipeline.run_job(ctx, body["id"]) == "succeeded"
    job = client.get(f"/v1/jobs/{body['id']}").get_json()
    assert (job["input"]["width"], job["input"]["format"], job["output"]["width"]) == (40, "jpeg", 80)
    with Image.open(io.BytesIO(ctx.storage.get_bytes(db_session.get(Job, body["id"]).output_key))) as out:
        assert out.size == (80, 60)


def test_a_retry_stores_what_it_fetched_not_what_an_earlier_attempt_left(client, ctx, db_session, server):
    """An attempt that stored its fetch and stopped before recording it (killed, or the database away at that
    commit) left the object; the next attempt fetched again, found the object and kept it, and recorded this fetch's
    facts over it: an address that now serves another image (a "latest" snapshot, a re-published photo) made a
    result of the old image under the new one's size, format and charge."""
    job_id = submit_url(client, server.base + "/photo.jpg").get_json()["id"]
    job = db_session.get(Job, job_id)
    earlier = image_bytes(width=20, height=10)  # what the address served to the attempt that stopped
    ctx.storage.put_bytes(job.input_key, earlier, "image/png")
    assert pipeline.run_job(ctx, job_id) == "succeeded"
    db_session.refresh(job)
    with Image.open(io.BytesIO(ctx.storage.get_bytes(job.input_key))) as stored:
        assert (stored.format, stored.size) == ("JPEG", (40, 30))
    assert (job.input_format, job.input_width, job.input_height) == ("jpeg", 40, 30)
    with Image.open(io.BytesIO(ctx.storage.get_bytes(job.output_key))) as out:
        assert out.size == (job.output_width, job.output_height) == (80, 60)


@pytest.mark.parametrize("path,code", [("/to-metadata", "input_url_refused"), ("/loop", "input_fetch_failed"),
                                       ("/missing", "input_fetch_failed"), ("/big.png", "input_too_large"),
                                       ("/page.html", "input_unreadable")])
def test_each_fetch_refusal_ends_in_its_code(settings, ctx, db_session, server, path, code, loopback_connections_only):
    from api import create_app

    small = settings.with_overrides(max_upload_bytes=200_000)
    client = create_app(small).test_client()
    job_id = submit_url(client, server.base + path).get_json()["id"]
    job = run_to_failure(small, db_session, job_id)
    assert job.error_code == code, job.error_message
    if path == "/to-metadata":  # the redirect target was refused, never contacted
        assert server.hits == ["/to-metadata"] and loopback_connections_only == []


@pytest.mark.parametrize("url,code", [("http://127.0.0.1:9/x.png", "image_url_refused"),
                                      ("http://10.1.2.3/x.png", "image_url_refused"),
                                      ("http://[::1]/x.png", "image_url_refused"),
                                      ("http://169.254.169.254/latest", "image_url_refused"),
                                      ("ftp://example.com/x.png", "invalid_parameter")])  # not even an http(s) URL
def test_a_refused_url_is_422_at_submit(settings, url, code, loopback_connections_only):
    from api import create_app

    client = create_app(settings.with_overrides(webhook_allow_private=False)).test_client()
    response = submit_url(client, url)
    assert (response.status_code, response.get_json()["code"]) == (422, code)


def test_a_file_and_a_url_together_are_refused(client, server):
    response = client.post("/v1/jobs", content_type="multipart/form-data",
                           data={"image_url": server.base + "/photo.jpg", "model": "bicubic",
                                 "image": (io.BytesIO(image_bytes()), "a.png")})
    assert (response.status_code, response.get_json()["code"]) == (400, "bad_request")


class TricklingServer(LoopbackServer):
    """Answers 200 with a large Content-Length, then sends one byte every ``pause`` seconds (or, with
    ``length``, a malformed Content-Length and the whole body at once)."""

    def __init__(self, pause: float = 0.1, length: str | None = None, body: bytes = b""):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(handler):
                handler.send_response(200)
                handler.send_header("Content-Length", length or "100000")
                handler.end_headers()
                if length:
                    handler.wfile.write(body)
                    return
                try:
                    for _ in range(200):
                        handler.wfile.write(b"x")
                        handler.wfile.flush()
                        time.sleep(pause)
                except OSError:
                    pass  # the client gave up

        super().__init__(Handler)
        self.url = self.base + "/slow.png"


def test_a_server_trickling_bytes_is_cut_off_at_the_whole_fetchs_deadline():
    """Each byte arrives well within a read timeout; only the overall deadline can stop the fetch (it once ran
    until the server stopped sending)."""
    from worker.fetch import FetchFailed, fetch

    server = TricklingServer(pause=0.1)
    try:
        started = time.monotonic()
        with pytest.raises(FetchFailed, match="longer than 1 s") as failure:
            fetch(server.url, allow_private=True, max_bytes=1_000_000, timeout=1.0)
        assert failure.value.code == "input_fetch_failed"
        assert time.monotonic() - started < 5  # the server would go on for 20 s
    finally:
        server.close()


def test_a_malformed_content_length_is_left_to_the_byte_cap():
    from worker.fetch import fetch

    photo = image_bytes(width=40, height=30, fmt="JPEG", quality=80)
    server = TricklingServer(length="12abc", body=photo)  # it once raised a bare ValueError
    try:
        assert fetch(server.url, allow_private=True, max_bytes=1_000_000, timeout=5.0) == photo
    finally:
        server.close()


def test_a_url_job_is_charged_to_the_daily_quota_once_its_size_is_known(client, ctx, db_session, server):
    """A job by image_url costs nothing at submit (its size is unknown), and the worker never charged it: a tenant
    with a 2 MP day could upscale any number of hosted images. The worker charges it once fetched: 600x600 at x2
    is 1.44 MP, past what a 1 MP upload left of a 2 MP day, so it fails quota_exceeded and stores nothing; a
    small one is charged. One larger than the whole day fails output_too_large (no day would take it)."""
    import uuid

    import redis

    from shared.tenants import create_key

    name = f"hosted-{uuid.uuid4().hex[:8]}"
    _, key = create_key(db_session, name, daily_megapixels=2)
    db_session.commit()
    auth = {"Authorization": f"Bearer {key}"}
    upload = client.post("/v1/jobs", headers=auth, content_type="multipart/form-data",  # 1.0 MP, charged at submit
                         data={"image": (io.BytesIO(image_bytes(width=500, height=500)), "a.png"), "scale": "2",
                               "model": "bicubic"})
    assert upload.status_code == 202
    big = client.post("/v1/jobs", headers=auth, content_type="multipart/form-data",
                      data={"image_url": server.base + "/big.png", "scale": "2", "model": "bicubic"}).get_json()
    assert pipeline.run_job(ctx, big["id"]) == "failed"
    job = db_session.get(Job, big["id"])
    db_session.refresh(job)
    assert (job.status, job.error_code) == ("failed", "quota_exceeded")
    assert not ctx.storage.exists(job.input_key)
    queue = redis.Redis.from_url(ctx.settings.redis_url)
    (refused,) = queue.keys(f"upscaler:mp:{name}:*")  # a refused charge counts nothing; the key expires
    assert float(queue.get(refused)) == pytest.approx(1.0) and 0 < queue.ttl(refused) <= 2 * 86400
    small = client.post("/v1/jobs", headers=auth, content_type="multipart/form-data",
                        data={"image_url": server.base + "/photo.jpg", "scale": "2", "model": "bicubic"}).get_json()
    assert pipeline.run_job(ctx, small["id"]) == "succeeded"
    assert float(queue.get(refused)) == pytest.approx(1.0 + 80 * 60 / 1e6)
    huge = client.post("/v1/jobs", headers=auth, content_type="multipart/form-data",  # 600x600 at x4: 5.76 MP
                       data={"image_url": server.base + "/big.png", "scale": "4", "model": "bicubic"}).get_json()
    assert pipeline.run_job(ctx, huge["id"]) == "failed"
    job = db_session.get(Job, huge["id"])
    db_session.refresh(job)
    assert (job.error_code, "larger than the whole daily quota of 2" in job.error_message) == ("output_too_large", True)


def _url_job_of_a_new_tenant(client, db_session, server, prefix: str, daily_megapixels: int) -> tuple[str, str]:
    """A new tenant with a daily quota, and its job by image_url (bicubic x2 of the 80x60 photo, not yet run)."""
    import uuid

    from shared.tenants import create_key

    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    _, key = create_key(db_session, name, daily_megapixels=daily_megapixels)
    db_session.commit()
    job_id = client.post("/v1/jobs", headers={"Authorization": f"Bearer {key}"}, content_type="multipart/form-data",
                         data={"image_url": server.base + "/photo.jpg", "scale": "2", "model": "bicubic"}
                         ).get_json()["id"]
    return name, job_id


def test_a_charge_left_by_a_worker_killed_before_its_record_is_given_back_by_the_next_attempt(client, ctx,
                                                                                            db_session, server):
    """A worker killed (SIGKILL, the OOM killer) between charging a fetched image and recording it gave nothing
    back, and the next attempt charged again: the tenant paid twice for one job."""
    import redis

    from shared import quota

    name, job_id = _url_job_of_a_new_tenant(client, db_session, server, "killed", daily_megapixels=1)
    counts = redis.Redis.from_url(ctx.settings.redis_url)
    megapixels = 80 * 60 / 1e6
    assert quota.charge(counts, name, 1, megapixels, pending_job=(job_id, "killed-worker"))  # what it did first
    assert pipeline.run_job(ctx, job_id) == "succeeded"
    (day,) = counts.keys(f"upscaler:mp:{name}:*")
    assert float(counts.get(day)) == pytest.approx(megapixels)
    assert db_session.get(Job, job_id).charged_megapixels == pytest.approx(megapixels)
    assert not counts.keys(f"upscaler:mp-notes:{job_id}")  # the record holds it now


def test_a_job_by_url_lost_before_any_record_gives_its_attempts_charges_back(client, ctx, db_session, server):
    """Every attempt killed between its charge and its record: the job ends worker_lost, made nothing, and held no
    charge of its own on its row; its attempts' notes went back to no one (each note only to a later fetch)."""
    import redis

    from shared import quota
    from tests.factories import seconds_ago
    from worker.sweeper import release_expired_leases

    name, job_id = _url_job_of_a_new_tenant(client, db_session, server, "lost", daily_megapixels=10)
    counts = redis.Redis.from_url(ctx.settings.redis_url)
    for attempt in ("killed-1", "killed-2"):  # the second's fetch took the first's note back, as it does
        quota.give_back_pending(counts, name, job_id)
        quota.charge(counts, name, 10, 0.5, pending_job=(job_id, attempt))
    db_session.query(Job).filter_by(id=job_id).update(
        {"status": "running", "lease_owner": "killed-2", "lease_expires_at": seconds_ago(3),
         "attempts": ctx.settings.max_attempts, "started_at": seconds_ago(60)})
    db_session.commit()
    assert release_expired_leases(ctx)[1] == [job_id]
    (day,) = counts.keys(f"upscaler:mp:{name}:*")
    assert float(counts.get(day)) == pytest.approx(0.0)
    assert db_session.get(Job, job_id).error_code == "worker_lost"


def test_an_attempt_stopped_before_the_fetch_is_recorded_gives_its_charge_back(client, ctx, db_session, server,
                                                                                monkeypatch):
    """Storage away right after the charge: the attempt goes back to the queue unrecorded, the next one fetches
    and charges again; the job was charged twice (and could fail quota_exceeded on its own charges)."""
    import redis

    from shared.storage import StorageError

    name, job_id = _url_job_of_a_new_tenant(client, db_session, server, "retried", daily_megapixels=1)
    real_exists, calls = ctx.storage.exists, []

    def away_once(stored_key):
        calls.append(stored_key)
        if len(calls) == 1:
            raise StorageError("S3 unreachable: connection refused")
        return real_exists(stored_key)

    monkeypatch.setattr(ctx.storage, "exists", away_once)
    assert pipeline.run_job(ctx, job_id) == "retrying"
    outage_wait_over(db_session, job_id)
    assert pipeline.run_job(ctx, job_id) == "succeeded"
    queue = redis.Redis.from_url(ctx.settings.redis_url)
    (charged,) = queue.keys(f"upscaler:mp:{name}:*")
    assert float(queue.get(charged)) == pytest.approx(80 * 60 / 1e6)  # once


def test_a_model_without_the_size_asked_is_refused_at_submit_or_once_the_url_is_fetched(settings, db_session, server,
                                                                                       tmp_path):
    """One check (shared.limits.check_job) for the API, the worker and the CLI: a fetched image at a scale its model
    has no network for ended ``engine_failed`` from a KeyError deep in the engine."""
    from api import create_app
    from tests.factories import models_with_a_scale_2_network

    custom = settings.with_overrides(models_dir=models_with_a_scale_2_network(tmp_path / "models"))
    client = create_app(custom).test_client()
    uploaded = client.post("/v1/jobs", data={"image": (io.BytesIO(image_bytes(width=40, height=30)), "a.png"),
                                             "scale": "4", "model": "two"}, content_type="multipart/form-data")
    assert (uploaded.status_code, uploaded.get_json()["code"], uploaded.get_json()["field"]) == \
        (422, "invalid_parameter", "scale")
    job_id = submit_url(client, server.base + "/photo.jpg", scale="4", model="two").get_json()["id"]
    job = run_to_failure(custom, db_session, job_id)
    assert (job.error_code, job.error_message) == ("unsupported_scale",
                                                   "model 'two' runs at scales x2; this size needs x4")


def test_a_host_that_does_not_resolve_now_fails_the_fetch_not_as_a_refused_destination(monkeypatch):
    """A name server that answers late or not at all is an outage of the fetch (input_fetch_failed), not a
    destination the policy refused (input_url_refused, which tells the user to send another URL)."""
    import socket

    from worker.fetch import FetchFailed, fetch

    def down(*_args, **_kwargs):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", down)
    with pytest.raises(FetchFailed) as failed:
        fetch("http://photos.example.test/a.jpg", allow_private=True, max_bytes=1_000_000, timeout=5.0)
    assert failed.value.code == "input_fetch_failed" and "does not resolve" in str(failed.value)


def test_a_name_resolving_to_a_private_address_fails_the_fetch_as_one_that_does_not_resolve(monkeypatch):
    """input_url_refused for a private answer against input_fetch_failed for none told a customer, in its job's
    error code, which of the deployment's names exist."""
    import socket

    from worker.fetch import FetchFailed, fetch

    resolver = one_internal_name("minio")
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    monkeypatch.setattr(socket.socket, "connect", no_connections)
    said = []
    for host in ("minio", "nosuchhost"):
        with pytest.raises(FetchFailed) as failed:
            fetch(f"http://{host}/a.jpg", allow_private=False, max_bytes=1_000_000, timeout=5.0)
        said.append((failed.value.code, str(failed.value).replace(host, "NAME")))
    assert said[0] == said[1] and said[0][0] == "input_fetch_failed"
    with pytest.raises(FetchFailed) as literal:  # an address written out tells nothing: refused as such
        fetch("http://10.1.2.3/a.jpg", allow_private=False, max_bytes=1_000_000, timeout=5.0)
    assert literal.value.code == "input_url_refused"


def test_a_fetch_over_many_silent_addresses_ends_within_its_deadline(monkeypatch):
    """Each address had its own 5 s connect timeout: a name with many addresses that do not answer held an
    inference worker many times past the fetch's deadline. Loopback only: a listener whose queue is full drops the
    connects, as a black hole would."""
    import socket
    import time

    from shared import pinned_http
    from worker.fetch import FetchFailed, fetch

    silent = socket.socket()
    silent.bind(("0.0.0.0", 0))
    silent.listen(0)
    port = silent.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.3)
    addresses = [f"127.0.0.{i}" for i in range(2, 8)]
    monkeypatch.setattr(pinned_http, "_resolve", lambda host, port_, seconds: [
        (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port_)) for address in addresses])
    started = time.monotonic()
    try:
        with pytest.raises(FetchFailed) as failed:
            fetch(f"http://many.example.test:{port}/x.png", True, 10_000_000, 2.0)
    finally:
        silent.close()
        for filler in fillers:
            filler.close()
    assert failed.value.code == "input_fetch_failed"
    assert time.monotonic() - started < 4  # 2 s and a little: it took 6 x 2 s before (one connect timeout each)
