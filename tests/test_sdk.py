"""The Python SDK (clients/python) against the real API over HTTP, and a real worker for wait/download."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import upscaler_client as sdk

from shared.tenants import create_key
from tests.images import image_bytes
from tests.workers import start_worker, stop_worker


def test_typed_errors_pagination_and_idempotent_submits(api_server, settings, db_session, tmp_path, monkeypatch):
    base, _ = api_server
    _, key = create_key(db_session, "sdk-tenant")
    db_session.commit()
    with pytest.raises(sdk.AuthenticationError):
        sdk.Client(base, api_key="upk_wrong").jobs.get("x")
    monkeypatch.setenv("UPSCALER_API_URL", base)
    monkeypatch.setenv("UPSCALER_API_KEY", key)
    client = sdk.Client()  # from the environment
    photo = tmp_path / "photo.png"
    photo.write_bytes(image_bytes(width=40, height=30))
    first = client.jobs.create(photo, model="bicubic", scale=2, idempotency_key="order-7")
    again = client.jobs.create(photo, model="bicubic", scale=2, idempotency_key="order-7")
    assert first.id == again.id and first.output.width == 80 and first.input.filename == "photo.png"
    made = [client.jobs.create(image_bytes(seed=i), model="bicubic", width=100).id for i in range(3)]
    listed = [job.id for job in client.jobs.list(page_size=2)]  # three pages
    assert listed == [*reversed(made), first.id]
    printed = client.jobs.create(photo, model="bicubic", dpi=254, print_width=2.5, print_unit="cm")
    assert printed.output.width == 250 and printed.raw["dpi"] == 254  # 2.5 cm at 254 dpi
    with pytest.raises(sdk.NotFound):
        client.jobs.get("0" * 32)
    with pytest.raises(sdk.InvalidRequest) as invalid:
        client.jobs.create(photo, model="bicubic", scale=9)
    assert invalid.value.code == "invalid_parameter" and invalid.value.status == 422
    with pytest.raises(sdk.InvalidRequest) as running:
        first.delete()  # still queued: cancel first
    assert (running.value.status, running.value.code) == (409, "job_not_finished")
    assert client.jobs.cancel(first.id).status == "canceled"
    deleted = first.delete()
    assert deleted.status == "canceled" and deleted.raw["expired_at"] is not None
    assert client.jobs.get(first.id).raw["expired_at"] == deleted.raw["expired_at"]
    assert {m.name for m in client.models.list()} >= {"auto", "bicubic"}
    from shared.webhooks import signing_secret

    assert client.webhook_secret() == signing_secret(settings, "sdk-tenant")  # what its messages are signed with
    rotated = client.rotate_webhook_secret()
    assert rotated != signing_secret(settings, "sdk-tenant") and client.webhook_secret() == rotated


def test_a_daily_quota_is_raised_at_once_not_waited_out(api_server, db_session):
    """Its Retry-After runs until midnight UTC: retrying within MAX_RETRY_AFTER cannot help (it once blocked a
    submit for three minutes and raised anyway)."""
    import time

    base, _ = api_server
    _, key = create_key(db_session, "sdk-quota-" + Path(base).name.replace(":", ""), daily_megapixels=2)
    db_session.commit()
    client = sdk.Client(base, key, max_retries=3)
    client.jobs.create(image_bytes(width=600, height=500), model="bicubic", scale=2)  # 1.2 MP of a 2 MP day
    usage = client.usage()  # what a client reads to pace itself before the 429 below
    assert (usage.daily_megapixels, usage.megapixels_used_today) == (2, pytest.approx(1.2))
    assert usage.megapixels_left_today == pytest.approx(0.8) and (usage.queued, usage.running) == (1, 0)
    assert usage.resets_at.utcoffset() is not None and usage.tenant.startswith("sdk-quota-")
    started = time.monotonic()
    with pytest.raises(sdk.RateLimited) as limited:
        client.jobs.create(image_bytes(width=600, height=500, seed=1), model="bicubic", scale=2)  # 2.4 MP > 2 MP
    assert limited.value.code == "quota_exceeded" and limited.value.retry_after > sdk.client.MAX_RETRY_AFTER
    assert time.monotonic() - started < 30  # answered, not slept through three 60 s waits


def test_downloading_an_expired_result_says_it_expired(api_server, db_session, tmp_path):
    from datetime import timedelta

    from shared.models import Job, utcnow

    base, _ = api_server
    _, key = create_key(db_session, "sdk-expired-" + Path(base).name.replace(":", ""))
    db_session.commit()
    client = sdk.Client(base, key)
    job = client.jobs.create(image_bytes(width=40, height=30), model="bicubic", scale=2)
    row = db_session.get(Job, job.id)
    row.status, row.output_key, row.expired_at = "succeeded", "results/gone/x.png", utcnow() - timedelta(days=1)
    db_session.commit()
    with pytest.raises(sdk.ApiError) as gone:
        client.jobs.download(job.id, tmp_path / "downloads" / "x.png")
    assert (gone.value.status, gone.value.code) == (410, "result_expired")
    assert not (tmp_path / "downloads").exists() or not list((tmp_path / "downloads").iterdir())  # no file at all


def test_connection_errors_are_retried_then_typed():
    client = sdk.Client("http://127.0.0.1:9", max_retries=1, backoff=0.01)  # nothing listens on port 9
    with pytest.raises(sdk.ConnectionError):
        client.models.list()


def test_a_rotation_whose_answer_was_lost_is_not_sent_again():
    """The client retried every call on a read timeout: a rotation the server had made, sent again, stopped at
    once the secret the first one kept signing for its grace. Reads stay retried."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def swallow():  # reads each request, never answers
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            accepted.append(connection)
            connection.recv(65536)

    threading.Thread(target=swallow, daemon=True).start()
    client = sdk.Client(f"http://127.0.0.1:{server.getsockname()[1]}", timeout=0.5, max_retries=2, backoff=0.01)
    try:
        with pytest.raises(sdk.ConnectionError, match="may have been done"):
            client.rotate_webhook_secret()
        assert len(accepted) == 1
        with pytest.raises(sdk.ConnectionError):
            client.models.list()
        assert len(accepted) == 4  # a read: tried three times
    finally:
        server.close()
        for connection in accepted:
            connection.close()


def test_rate_limits_are_typed_with_retry_after(api_server, db_session):
    base, _ = api_server
    _, key = create_key(db_session, "sdk-limited-" + Path(base).name.replace(":", ""), rate_limit=1)
    db_session.commit()
    client = sdk.Client(base, key, max_retries=0)
    client.models.list()
    with pytest.raises(sdk.RateLimited) as limited:
        client.models.list()
    assert 0 < limited.value.retry_after <= 60


@pytest.mark.slow
def test_wait_download_and_job_failed_with_a_real_worker(api_server, settings, tmp_path):
    base, _ = api_server
    client = sdk.Client(base)
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        progress = []
        job = client.jobs.create(image_bytes(width=48, height=32), scale=2, model="bicubic", filename="p.png")
        done = job.wait(timeout=120, on_progress=lambda j: progress.append(j.progress))
        assert done.status == "succeeded" and progress[-1] == 1.0
        path = done.download(tmp_path / "out" / "p_x2.png")
        assert path.read_bytes()[:4] == b"\x89PNG"
        broken = client.jobs.create(image_bytes(fmt="TIFF", width=64, height=64)[:-3000], model="bicubic")
        with pytest.raises(sdk.JobFailed) as failed:
            broken.wait(timeout=120)
        assert failed.value.code == "input_unreadable"
        slow = client.jobs.create(image_bytes(width=900, height=700), scale=4, model="residual_sr")
        with pytest.raises(sdk.Timeout):
            slow.wait(timeout=0.5)
        slow.cancel()
    finally:
        stop_worker(worker)


def test_webhook_signatures_verify_like_the_standard_library():
    from shared.webhooks import signed_headers

    secret = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHM="
    body = json.dumps({"type": "job.succeeded"})
    headers = signed_headers(secret, "msg_1", body)
    sdk.verify_webhook(secret, headers, body)
    with pytest.raises(sdk.WebhookVerificationError):
        sdk.verify_webhook(secret, headers, body + " ")
    sdk.verify_webhook(secret, headers, body.encode())  # the raw bytes a web framework hands over


@pytest.mark.parametrize("forgery", ["signature", "body"])
def test_a_forged_webhook_is_a_verification_error_never_a_crash(forgery):
    """A non-ASCII signature and a body that is not UTF-8 once raised TypeError / UnicodeDecodeError (a 500 in
    the receiver) instead of WebhookVerificationError."""
    from shared.webhooks import signed_headers

    secret = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHM="
    body = json.dumps({"type": "job.succeeded"})
    headers = signed_headers(secret, "msg_1", body)
    if forgery == "signature":
        headers["webhook-signature"] = "v1,é" + headers["webhook-signature"][4:]
    with pytest.raises(sdk.WebhookVerificationError):
        sdk.verify_webhook(secret, headers, body.encode() + (b"\xff\xfe" if forgery == "body" else b" "))
    with pytest.raises(ValueError, match="whsec_"):
        sdk.verify_webhook("whsec_abc", headers, body)  # the receiver's own misconfiguration, said as such


def test_installing_the_sdk_pulls_no_server_package(request):
    """The SDK needs requests and nothing of the server (Flask, TensorFlow, ...). Read offline, from its own
    pyproject and from the metadata of the copy installed here (a resolver run would reach a package index)."""
    import importlib.metadata
    import tomllib

    from packaging.requirements import Requirement

    pyproject = request.config.rootpath / "clients" / "python" / "pyproject.toml"
    declared = {Requirement(r).name.lower() for r in tomllib.loads(pyproject.read_text())["project"]["dependencies"]}
    installed = {Requirement(r).name.lower() for r in importlib.metadata.requires("upscaler-client") or []}
    assert declared == installed == {"requests"}
    # and requests itself brings only its four small dependencies
    brought = {Requirement(r).name.lower().replace("_", "-") for r in importlib.metadata.requires("requests") or []
               if "extra ==" not in r}
    assert brought <= {"urllib3", "idna", "charset-normalizer", "certifi"}, brought


def test_a_key_read_from_a_file_works_and_a_bad_one_is_said_without_its_text():
    """A Kubernetes secret made from a file ends in a newline: as a header it failed every request, reworded as
    "cannot reach" with the key quoted in the message."""
    assert sdk.Client("http://127.0.0.1:9", api_key="upk_abc\n").api_key == "upk_abc"
    with pytest.raises(ValueError, match="control characters") as bad:
        sdk.Client("http://127.0.0.1:9", api_key="upk_a\x00bc")
    assert "upk_a" not in str(bad.value)
    assert isinstance(bad.value, sdk.UpscalerError)  # the CLI says it in one line (it was a traceback)


def test_job_ids_are_escaped_into_their_path(api_server):
    """An id from elsewhere ("x/deliveries/redeliver?") reached another route (a webhook was redelivered)."""
    base, _ = api_server
    client = sdk.Client(base, "")
    for forged in ("../../healthz", "0" * 32 + "/deliveries/redeliver?x="):
        with pytest.raises(sdk.NotFound):
            client.jobs.cancel(forged)
        with pytest.raises(sdk.NotFound):
            client.jobs.get(forged)


def test_an_empty_webhook_secret_is_a_configuration_error_not_a_pass():
    """An unset secret ("") decoded to an empty HMAC key: a message anyone signed with it verified."""
    import base64
    import hashlib
    import hmac
    import time

    body, message_id, sent = '{"type": "job.succeeded"}', "msg_1", str(int(time.time()))
    forged = base64.b64encode(hmac.new(b"", f"{message_id}.{sent}.{body}".encode(), hashlib.sha256).digest())
    headers = {"webhook-id": message_id, "webhook-timestamp": sent, "webhook-signature": "v1," + forged.decode()}
    for secret in ("whsec_", "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError, match="a platform secret has 16"):
            sdk.verify_webhook(secret, headers, body)
    stale = {**headers, "webhook-timestamp": str(int(time.time()) - 3600)}
    for secret in (None, ""):  # os.environ.get of an unset variable: an AttributeError; a stale request hid it
        for sent_headers in (headers, stale):
            with pytest.raises(ValueError, match="no webhook secret given"):
                sdk.verify_webhook(secret, sent_headers, body)


def test_waiting_rides_out_an_unreachable_api_and_polls_at_its_retry_after(monkeypatch):
    """A restart of the API during --wait failed the file (and a re-run made a second job); polling every 0.5 s
    ignored the API's Retry-After: 2 and spent the tenant's rate limit."""
    import requests

    client = sdk.Client("http://127.0.0.1:9", max_retries=0)
    states = iter(["down", "down", "queued", "succeeded"])
    sleeps: list[float] = []

    def answer(method, path, **kwargs):
        state = next(states)
        if state == "down":
            raise sdk.ConnectionError("cannot reach http://127.0.0.1:9")
        response = requests.Response()
        response.status_code, response.headers["Retry-After"] = 200, "2"
        response._content = json.dumps({"id": "j1", "status": state, "progress": 0.5, "model": "auto", "input": {},
                                        "output": {}}).encode()
        return response

    monkeypatch.setattr(client, "request", answer)
    monkeypatch.setattr(sdk.client.time, "sleep", sleeps.append)
    assert client.jobs.wait("j1").status == "succeeded"
    assert sleeps == [2.0, 2.0, 2.0]  # through the outage, then at the API's pace
    states = iter(["queued", "succeeded"])  # and so does a Job's own wait() (it polled every 0.5 s)
    sleeps.clear()
    job = sdk.Job.from_json({"id": "j1", "status": "queued", "progress": 0.0, "model": "auto", "input": {},
                             "output": {}}, client)
    assert job.wait().status == "succeeded" and sleeps == [2.0]
    states, heard = iter(["down", "down", "down"]), []  # on_unavailable hears each outage; what it raises ends it

    def stop_at_the_second(exc):
        heard.append(exc)
        if len(heard) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        client.jobs.wait("j1", on_unavailable=stop_at_the_second)
    assert [type(exc) for exc in heard] == [sdk.ConnectionError] * 2


def test_downloading_into_a_folder_keeps_the_results_name(api_server, settings, tmp_path):

    base, _ = api_server
    client = sdk.Client(base, "")
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        job = client.jobs.create(image_bytes(width=20, height=16), filename="shop.png", model="bicubic",
                                 scale=2).wait(timeout=180)
    finally:
        stop_worker(worker)
    (tmp_path / "results").mkdir()
    saved = job.download(tmp_path / "results")
    assert saved == tmp_path / "results" / job.output.filename and saved.name.startswith("shop")
    assert not list(tmp_path.rglob("*.part"))
    # a folder not made yet, named with a trailing slash (as `upscaler jobs download ID new/` passes it): it was
    # taken for a file called "new"
    fresh = job.download(f"{tmp_path}/new/")
    assert fresh == tmp_path / "new" / job.output.filename


class _FakeApi:
    """A loopback HTTP server answering each request with the next of ``answers`` (status, headers, body; the last
    one again and again), and recording each as (method, path) in ``requests`` and its headers in ``headers``. An
    answer's own Content-Length wins (a body cut short); None leaves it out (a body that ends as the connection
    closes: HTTP/1.0)."""

    def __init__(self, answers):
        import http.server
        import threading

        self.answers, self.requests, self.headers = list(answers), [], []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.requests.append((self.command, self.path))
                fake.headers.append(dict(self.headers))
                status, headers, body = fake.answers.pop(0) if len(fake.answers) > 1 else fake.answers[0]
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    if value is not None:
                        self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _job(status, **extra):
    return json.dumps({"id": "j1", "status": status, "progress": 1.0, "model": "bicubic", "input": {},
                       "output": {"filename": "x.png"}, **extra}).encode()


def test_submitting_by_url_is_a_multipart_form_the_api_takes(api_server):
    """With no file the SDK sent a url-encoded form, which the API refuses: every image_url submit was a 400."""
    fake = _FakeApi([(200, {"Content-Type": "image/png"}, image_bytes(width=20, height=10))])
    try:
        base, _ = api_server
        job = sdk.Client(base, "").jobs.create(image_url=f"{fake.base}/photo.png", model="bicubic", scale=2)
    finally:
        fake.close()
    assert job.status == "queued" and job.raw["input"]["url"] == f"{fake.base}/photo.png"


def test_waiting_rides_out_5xx_and_429_and_ends_by_its_deadline():
    """A proxy's 502 or the API's own 503 during a restart raised ServerError after three quick retries though the
    job ran on; a hung API held one poll for (retries + 1) x the client timeout past wait()'s deadline."""
    import socket
    import time

    fake = _FakeApi([(503, {"Retry-After": "1"}, b'{"code": "service_unavailable", "detail": "db down"}'),
                     (502, {}, b"bad gateway"), (429, {"Retry-After": "1"}, b'{"code": "rate_limited"}'),
                     (200, {}, _job("succeeded"))])
    try:
        assert sdk.Client(fake.base, "", max_retries=0).jobs.wait("j1", timeout=30).status == "succeeded"
        assert len(fake.requests) == 4
    finally:
        fake.close()
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    try:
        hung = sdk.Client(f"http://127.0.0.1:{silent.getsockname()[1]}", "", timeout=30)
        started = time.monotonic()
        with pytest.raises(sdk.Timeout):  # waiting ran out (the job keeps running), as documented
            hung.jobs.wait("j1", timeout=1)
        assert time.monotonic() - started < 5  # was 4 x 30 s
    finally:
        silent.close()
    broken = _FakeApi([(500, {}, b'{"code": "internal_error", "detail": "a bug"}')])
    try:  # the API's own fault is raised at once, not polled for an hour
        with pytest.raises(sdk.ServerError, match="internal_error"):
            sdk.Client(broken.base, "", max_retries=0).jobs.wait("j1", timeout=30)
        assert len(broken.requests) == 1
    finally:
        broken.close()


def test_a_result_link_that_fails_is_a_typed_error_after_retries(tmp_path):
    """A refused or reset result link raised requests' own ConnectionError, which ``except UpscalerError`` missed."""
    fake = _FakeApi([(200, {}, _job("succeeded", result_url="http://127.0.0.1:9/x.png"))])
    try:
        with pytest.raises(sdk.ConnectionError, match="cannot download the result of job j1"):
            sdk.Client(fake.base, "", max_retries=1, backoff=0.01).jobs.download("j1", tmp_path / "x.png")
    finally:
        fake.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("lost", [(502, {}), (504, {}), (503, {})], ids=["502", "504", "503-from-a-proxy"])
def test_a_rotation_whose_answer_a_gateway_lost_is_not_sent_again(lost):
    """A proxy's 502 or 504 came after the API had rotated: the client sent the rotation again, and the secret it
    was handed stopped signing at once (a 503 without the API's Retry-After may be a proxy's too). Reads through the
    same answers stay retried."""
    status, headers = lost
    secret = json.dumps({"tenant": "acme", "secret": "whsec_" + "A" * 24}).encode()
    fake = _FakeApi([(status, headers, b"gateway"), (status, headers, b"gateway"), (200, {}, secret)])
    try:
        client = sdk.Client(fake.base, "", max_retries=2, backoff=0.01)
        with pytest.raises(sdk.ServerError, match="may have been done") as raised:
            client.rotate_webhook_secret()
        assert raised.value.status == status
        assert fake.requests == [("POST", "/v1/webhooks/secret/rotate")]
        assert client.webhook_secret() == "whsec_" + "A" * 24
        assert fake.requests[1:] == [("GET", "/v1/webhooks/secret")] * 2
    finally:
        fake.close()


def test_a_rotation_refused_before_it_was_made_is_sent_again():
    """A 429 and the API's own 503 (with Retry-After: "nothing was done") come before the action: retried."""
    secret = json.dumps({"tenant": "acme", "secret": "whsec_" + "A" * 24}).encode()
    fake = _FakeApi([(429, {"Retry-After": "0"}, b'{"code": "rate_limited"}'),
                    (503, {"Retry-After": "0"}, b'{"code": "service_unavailable", "detail": "nothing was done"}'),
                    (201, {}, secret)])
    try:
        assert sdk.Client(fake.base, "", max_retries=2, backoff=0.01).rotate_webhook_secret() == "whsec_" + "A" * 24
        assert fake.requests == [("POST", "/v1/webhooks/secret/rotate")] * 3
    finally:
        fake.close()


@pytest.mark.parametrize("timestamp", ["9" * 400, "-" + "9" * 400])
def test_a_huge_webhook_timestamp_is_a_verification_error_not_an_overflow(timestamp):
    """A 400-digit webhook-timestamp raised OverflowError (a 500 in the receiver) instead of the documented error."""
    headers = {"webhook-id": "msg_1", "webhook-timestamp": timestamp, "webhook-signature": "v1,AAAA"}
    with pytest.raises(sdk.WebhookVerificationError, match="timestamp"):
        sdk.verify_webhook("whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHM=", headers, "{}")


def test_a_webhook_secret_read_from_a_file_verifies():
    """A secret read from a file or a Kubernetes secret ends in a newline: it was refused as not base64. It has the
    form the platform's signer takes, whsec_<base64>; anything else is said as the receiver's configuration error."""
    from shared.webhooks import signed_headers

    secret = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHM="
    body = json.dumps({"type": "job.succeeded"})
    headers = signed_headers(secret, "msg_1", body)
    for read in (secret + "\n", f" {secret}\r\n"):
        sdk.verify_webhook(read, headers, body)
    for wrong in (secret.removeprefix("whsec_"), secret[:12] + "\n" + secret[12:], "\n"):
        with pytest.raises(ValueError, match=r"form whsec_<base64>|no webhook secret given"):
            sdk.verify_webhook(wrong, headers, body)


def test_a_submit_whose_answer_was_lost_names_its_key_and_a_retry_with_it_gets_the_same_job(api_server,
                                                                                                db_session):
    """Once the client's own retries ran out, the ConnectionError hid the Idempotency-Key: a caller retrying made
    a second job, charged again. Here every answer is lost after the API made the job (a proxy dropping them)."""
    import requests

    class AnswerLost(requests.adapters.HTTPAdapter):
        def send(self, request, **kwargs):
            super().send(request, **kwargs)
            raise requests.ConnectionError("the proxy dropped the answer")

    base, _ = api_server
    _, key = create_key(db_session, "sdk-lost-" + Path(base).name.replace(":", ""))
    db_session.commit()
    lossy = sdk.Client(base, key, max_retries=2, backoff=0.01)
    lossy.http.mount(base, AnswerLost())
    photo = image_bytes(width=40, height=30)
    with pytest.raises(sdk.ConnectionError, match=r"may have been created.*idempotency_key=") as lost:
        lossy.jobs.create(photo, model="bicubic", scale=2)
    assert lost.value.idempotency_key.startswith("sdk-") and lost.value.idempotency_key in str(lost.value)
    client = sdk.Client(base, key)
    job = client.jobs.create(photo, model="bicubic", scale=2, idempotency_key=lost.value.idempotency_key)
    assert [each.id for each in client.jobs.list()] == [job.id]  # one job, made by the first try


def test_retry_after_is_read_as_seconds_or_an_http_date_never_below_zero():
    """An HTTP date (what gateways send) was ignored and retried at once, raising RateLimited with retry_after None;
    Retry-After: -1 crashed time.sleep with a ValueError."""
    import email.utils
    import time

    import requests
    from upscaler_client.client import _retry_after

    def answer(value):
        response = requests.Response()
        response.headers["Retry-After"] = value
        return response

    assert _retry_after(answer("-1")) == 0.0
    assert 115 < _retry_after(answer(email.utils.formatdate(time.time() + 120, usegmt=True))) <= 120
    assert _retry_after(answer("Wed, 21 Oct 2015 07:28:00 GMT")) == 0.0  # past
    assert _retry_after(answer("soon")) is None and _retry_after(answer("nan")) is None
    fake = _FakeApi([(429, {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}, b'{"code": "rate_limited"}')])
    try:
        with pytest.raises(sdk.RateLimited) as limited:
            sdk.Client(fake.base, "", max_retries=3, backoff=0.01).models.list()
        assert limited.value.retry_after > sdk.client.MAX_RETRY_AFTER and len(fake.requests) == 1  # not waited
    finally:
        fake.close()


def test_an_answer_cut_off_mid_body_is_a_lost_answer_and_other_failures_are_typed():
    """A body cut short (ChunkedEncodingError) escaped as requests' own error, not retried, and ended wait() at
    once though the job ran on."""
    cut = (200, {"Content-Length": "1000"}, b"x" * 10)
    fake = _FakeApi([cut, cut, (200, {}, _job("succeeded"))])
    try:
        assert sdk.Client(fake.base, "", max_retries=2, backoff=0.01).jobs.get("j1").status == "succeeded"
        assert len(fake.requests) == 3  # a read: tried again
        fake.answers = [cut, cut, (200, {}, _job("succeeded"))]
        assert sdk.Client(fake.base, "", max_retries=0).jobs.wait("j1", interval=0.01).status == "succeeded"
        fake.answers, fake.requests = [cut], []
        with pytest.raises(sdk.ConnectionError, match="may have been done"):
            sdk.Client(fake.base, "", max_retries=2, backoff=0.01).rotate_webhook_secret()
        assert len(fake.requests) == 1  # not repeatable: never sent twice
    finally:
        fake.close()
    with pytest.raises(sdk.ConnectionError, match="cannot call"):  # requests' InvalidURL: port out of range
        sdk.Client("http://127.0.0.1:99999").models.list()


def test_download_goes_through_the_clients_session_without_the_api_key(tmp_path):
    """It used requests.get: the session's settings (a private CA in verify, a client certificate, proxies) were
    not used, and every download from a self-hosted store with its own CA failed. The key still never goes to the
    result link."""
    fake = _FakeApi([])
    fake.answers = [(200, {}, _job("succeeded", result_url=f"{fake.base}/signed/x.png")), (200, {}, b"RESULT")]
    try:
        client = sdk.Client(fake.base, "upk_secret")
        client.http.headers["X-Through"] = "the session"
        assert client.jobs.download("j1", tmp_path / "x.png").read_bytes() == b"RESULT"
    finally:
        fake.close()
    api, link = fake.headers
    assert api["Authorization"] == "Bearer upk_secret" and "Authorization" not in link
    assert link["X-Through"] == "the session" and fake.requests[1] == ("GET", "/signed/x.png")


def test_api_errors_carry_their_request_id_from_the_body_or_the_header():
    """request_id, what docs/errors.md says to quote to the operator, was only in exc.body and never in the message;
    a proxy's HTML page lost its X-Request-Id; a JSON body that is not an object raised AttributeError."""
    fake = _FakeApi([(422, {"X-Request-Id": "header-id"}, b'{"code": "invalid_parameter", "detail": "scale: no", '
                                                           b'"request_id": "body-id"}'),
                     (400, {"X-Request-Id": "proxy-req-123", "Content-Type": "text/html"}, b"<html>bad</html>"),
                     (400, {}, b'["oops"]')])
    try:
        client = sdk.Client(fake.base, "", max_retries=0)
        raised = []
        for _ in range(3):
            with pytest.raises(sdk.InvalidRequest) as error:
                client.models.list()
            raised.append(error.value)
    finally:
        fake.close()
    assert [each.request_id for each in raised] == ["body-id", "proxy-req-123", None]
    assert str(raised[0]) == "422 invalid_parameter: scale: no [request_id=body-id]"
    assert str(raised[1]).endswith("[request_id=proxy-req-123]") and raised[2].code == "http_error"


def test_a_redirected_submit_is_refused_naming_the_location_not_sent_on_as_a_get():
    """http:// behind a proxy that 301s to https: requests turned the POST into GET /v1/jobs, whose job list then
    failed Job.from_json with a KeyError traceback. Reads still follow redirects."""
    fake = _FakeApi([])
    fake.answers = [(301, {"Location": f"{fake.base}/moved/v1/jobs"}, b""), (200, {}, b'{"data": []}')]
    try:
        client = sdk.Client(fake.base, "", max_retries=0)
        moved = re.escape(f"redirected to {fake.base}/moved/v1/jobs")
        with pytest.raises(sdk.InvalidRequest, match=moved) as redirected:
            client.jobs.create(image_bytes(width=8, height=8), scale=2)
        assert (redirected.value.status, redirected.value.code) == (301, "redirected")
        assert fake.requests == [("POST", "/v1/jobs")]
        fake.answers = [(302, {"Location": "/moved/v1/jobs/j1"}, b""), (200, {}, _job("queued"))]
        assert client.jobs.get("j1").status == "queued" and fake.requests[-1] == ("GET", "/moved/v1/jobs/j1")
    finally:
        fake.close()


def test_waiting_never_sleeps_past_its_timeout():
    """A Retry-After of 30 held wait(timeout=1) for the whole 30 s."""
    import time

    fake = _FakeApi([(200, {"Retry-After": "30"}, _job("running"))])
    try:
        started = time.monotonic()
        with pytest.raises(sdk.Timeout):
            sdk.Client(fake.base, "").jobs.wait("j1", timeout=1)
        assert time.monotonic() - started < 5
    finally:
        fake.close()


def test_a_short_result_without_content_length_is_retried_and_never_replaces_the_target(tmp_path):
    """A body ended by a closed connection, with no Content-Length, looked whole: 10 of its 1000 bytes were
    renamed over the file already at the target."""
    fake = _FakeApi([])
    job = _job("succeeded", result_url=f"{fake.base}/x.png", output={"filename": "x.png", "bytes": 1000})
    fake.answers = [(200, {}, job), (200, {"Content-Length": None}, b"x" * 10)]
    target = tmp_path / "keep.png"
    target.write_bytes(b"ORIGINAL")
    try:
        with pytest.raises(sdk.ConnectionError, match="10 of its 1000 bytes"):
            sdk.Client(fake.base, "", max_retries=1, backoff=0.01).jobs.download("j1", target)
        assert len(fake.requests) == 3  # the job, then the link twice
    finally:
        fake.close()
    assert target.read_bytes() == b"ORIGINAL" and list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("timeout", [None, 0, -1])
def test_a_timeout_that_is_not_some_seconds_is_refused_at_construction(timeout):
    """Client(timeout=None), "no timeout" to requests, failed with a TypeError at the first call; a hung API would
    hold such a call for good, so it is refused where it is given."""
    with pytest.raises(ValueError, match="timeout is the seconds each try of a call may take"):
        sdk.Client("http://127.0.0.1:9", timeout=timeout)


def test_an_answer_that_is_not_json_is_a_typed_error_naming_what_answered_and_waited_through():
    """A base URL pointing at a web server (or a proxy's page served as 200) raised requests' own JSONDecodeError,
    which ``except UpscalerError`` missed (and a JSON list a TypeError). It is InvalidResponse, naming the URL, the
    status and the Content-Type; wait() rides it out as it rides out a proxy's 502, and on_unavailable hears it."""
    page = (200, {"Content-Type": "text/html"}, b"<html><body>Welcome to nginx!</body></html>")
    fake = _FakeApi([page])
    try:
        client = sdk.Client(fake.base, "", max_retries=0)
        calls = {"/v1/models": client.models.list, "/v1/jobs/j1": lambda: client.jobs.get("j1"),
                 "/v1/jobs?limit=100": lambda: list(client.jobs.list()),
                 "/v1/jobs/j1/cancel": lambda: client.jobs.cancel("j1"),
                 "/v1/jobs": lambda: client.jobs.create(image_bytes(width=8, height=8), scale=2),
                 "/v1/webhooks/secret": client.webhook_secret,
                 "/v1/webhooks/secret/rotate": client.rotate_webhook_secret}
        for path, call in calls.items():
            with pytest.raises(sdk.InvalidResponse) as raised:
                call()
            assert (raised.value.status, raised.value.code) == (200, "invalid_response")
            assert f"{fake.base}{path} answered text/html, not the API's JSON" in str(raised.value)
        fake.answers = [(200, {"Content-Type": "application/json"}, b'["a", "list"]')]
        with pytest.raises(sdk.InvalidResponse, match="answered application/json, not the API's JSON"):
            client.models.list()
        fake.answers, heard = [page, page, (200, {}, _job("succeeded"))], []
        assert client.jobs.wait("j1", interval=0.01, on_unavailable=heard.append).status == "succeeded"
        assert [type(exc) for exc in heard] == [sdk.InvalidResponse] * 2
    finally:
        fake.close()


def test_a_submit_that_never_reached_the_api_does_not_say_it_may_have_made_a_job():
    """A refused connection and a URL that cannot be called were said as "the job may have been created: to retry
    without making a second one, pass idempotency_key=..." though nothing had been sent. Only a try that may have
    reached the API says so, even when a later try was refused."""
    import socket
    import threading

    for base in ("http://127.0.0.1:9", "http://127.0.0.1:99999"):  # nothing listens; a port out of range
        with pytest.raises(sdk.ConnectionError) as unsent:
            sdk.Client(base, "", max_retries=1, backoff=0.01).jobs.create(image_bytes(width=8, height=8), scale=2)
        assert unsent.value.sent is False and unsent.value.idempotency_key is None
        assert "may have been created" not in str(unsent.value)

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer_none_then_go():  # takes the first try and drops it unanswered; the next try is refused
        connection, _ = server.accept()
        server.close()
        connection.recv(65536)
        connection.close()

    threading.Thread(target=answer_none_then_go, daemon=True).start()
    with pytest.raises(sdk.ConnectionError, match="may have been created") as lost:
        sdk.Client(f"http://127.0.0.1:{port}", "", max_retries=1, backoff=0.01).jobs.create(
            image_bytes(width=8, height=8), scale=2)
    assert lost.value.sent is True and lost.value.idempotency_key.startswith("sdk-")
    assert str(lost.value).startswith(f"cannot reach http://127.0.0.1:{port}")


def test_a_host_name_that_does_not_resolve_never_reached_the_api(monkeypatch):
    """urllib3 gives a failed lookup as NameResolutionError, whose repr does not say NewConnectionError: a submit to
    a mistyped host was said to have maybe made its job (sent, with an idempotency key to retry with), and a
    rotation was not retried though nothing can have been done."""
    import socket

    from tests.dns import one_internal_name

    monkeypatch.setattr(socket, "getaddrinfo", one_internal_name("internal.test"))  # every other name fails
    client = sdk.Client("http://upscaler.invalid:8000", "upk_x", max_retries=1, backoff=0.01)
    with pytest.raises(sdk.ConnectionError, match="cannot reach") as unresolved:
        client.jobs.create(b"image", scale=2)
    assert unresolved.value.sent is False and unresolved.value.idempotency_key is None
    assert "may have been created" not in str(unresolved.value)
    with pytest.raises(sdk.ConnectionError, match="cannot reach") as rotation:
        client.rotate_webhook_secret()
    assert rotation.value.sent is False


class _ResultLink:
    """A loopback result link serving ``body`` under ``etag`` with one byte Range and If-Match, as the API's
    /v1/files/ links and S3 do; the first ``cuts`` answers are cut off after ``cut`` bytes (a reset mid-download).
    Each request's headers are kept in ``headers``."""

    def __init__(self, body: bytes, etag: str, cut: int, cuts: int = 1):
        import http.server
        import threading

        self.body, self.etag, self.headers = body, etag, []
        link = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                link.headers.append(dict(self.headers))
                if self.path.startswith("/v1/jobs/"):
                    job = _job("succeeded", result_url=f"{link.base}/x.png",
                               output={"filename": "x.png", "bytes": len(link.body)})
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(job)))
                    self.end_headers()
                    self.wfile.write(job)
                    return
                wanted = self.headers.get("If-Match")
                if wanted is not None and wanted != link.etag:
                    self.send_response(412)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = int(re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "bytes=0-")).group(1))
                part = link.body[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(link.body) - 1}/{len(link.body)}")
                self.send_header("Content-Length", str(len(part)))
                self.send_header("ETag", link.etag)
                self.end_headers()
                if len(link.links()) <= cuts:
                    self.wfile.write(part[:cut])  # and the connection closes: the rest never comes
                    return
                self.wfile.write(part)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def links(self) -> list[dict]:
        return [h for h in self.headers if "Authorization" not in h]  # the API calls carry the key, links never

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_download_cut_off_goes_on_from_the_bytes_it_has(tmp_path):
    """A reset mid-download fetched the whole result again, each try (a 3 GB TIFF cut near its end, four times);
    the links answer one Range under If-Match, so a retry asks for the rest of the same file only."""
    import os

    body = os.urandom(3 * 1024 * 1024)
    link = _ResultLink(body, '"v1"', cut=2 * 1024 * 1024 + 1000)
    try:
        path = sdk.Client(link.base, "upk_x", max_retries=1, backoff=0.01).jobs.download("j1", tmp_path / "x.png")
    finally:
        link.close()
    assert path.read_bytes() == body and list(tmp_path.iterdir()) == [path]
    first, second = link.links()
    assert "Range" not in first and second["If-Match"] == '"v1"'
    start = int(second["Range"].removeprefix("bytes=").removesuffix("-"))
    assert 2 * 1024 * 1024 - 64 * 1024 <= start <= 2 * 1024 * 1024 + 1000  # only what the cut lost is sent again


def test_a_result_that_changed_under_a_resumed_download_is_fetched_whole_again(tmp_path):
    """Bytes of another file are never joined to the ones it has: If-Match fails (412), and the next try takes
    the whole file, whose size the job gives."""
    import os

    body = os.urandom(3 * 1024 * 1024)
    link = _ResultLink(body, '"v1"', cut=2 * 1024 * 1024)
    try:
        client = sdk.Client(link.base, "upk_x", max_retries=2, backoff=0.01)
        original_get = client.http.get

        def changed_after_the_first(url, **kwargs):  # the store rewrote the object after the first answer
            if len(link.links()) == 1:
                link.etag, link.body = '"v2"', os.urandom(len(body))
            return original_get(url, **kwargs)

        client.http.get = changed_after_the_first
        path = client.jobs.download("j1", tmp_path / "x.png")
    finally:
        link.close()
    assert path.read_bytes() == link.body
    ranged = [h.get("Range") for h in link.links()]
    assert ranged[0] is None and ranged[1] is not None and ranged[2] is None  # 412, then whole


def test_a_submit_takes_an_open_file_or_a_bytes_like_and_names_it(api_server, tmp_path):
    """``create`` took a path or bytes only: an open file (a web framework's upload, a BytesIO) was a TypeError
    from open()."""
    import io

    base, _ = api_server
    client = sdk.Client(base, "")
    photo = tmp_path / "photo.png"
    photo.write_bytes(image_bytes(width=40, height=30))
    with open(photo, "rb") as handle:
        assert client.jobs.create(handle, model="bicubic", scale=2).input.filename == "photo.png"
    assert client.jobs.create(io.BytesIO(image_bytes(seed=1)), model="bicubic", scale=2).input.width == 64
    assert client.jobs.create(bytearray(image_bytes(seed=2)), model="bicubic", scale=2,
                              filename="scan.png").input.filename == "scan.png"


def test_prefer_wait_is_sent_and_each_try_may_take_the_wait(tmp_path):
    """The API holds a submit with ``Prefer: wait=N`` up to N seconds; the SDK could not ask for it, and a try's
    timeout shorter than N would have cut the answer off and sent the submit again."""
    import time

    fake = _FakeApi([(202, {}, _job("queued"))])
    handler = fake.server.RequestHandlerClass
    answer = handler.do_POST

    def slowly(self):  # the API holding the answer for the wait
        time.sleep(1.0)
        answer(self)

    handler.do_POST = slowly
    try:
        job = sdk.Client(fake.base, "", timeout=0.5, max_retries=0).jobs.create(b"image", wait=1)
    finally:
        fake.close()
    assert job.status == "queued" and fake.headers[0]["Prefer"] == "wait=1" and len(fake.requests) == 1
    for wrong in (0, 61, 1.5, True):
        with pytest.raises(ValueError, match="wait is whole seconds"):
            sdk.Client("http://127.0.0.1:9").jobs.create(b"image", wait=wrong)


def test_the_sdk_is_typed_for_type_checkers(request):
    """No py.typed (PEP 561): mypy read every name of the SDK as Any ('missing library stubs or py.typed')."""
    import importlib.resources
    import tomllib

    assert importlib.resources.files("upscaler_client").joinpath("py.typed").is_file()
    pyproject = tomllib.loads((request.config.rootpath / "clients" / "python" / "pyproject.toml").read_text())
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["upscaler_client"]


def test_a_job_made_by_hand_says_it_has_no_client():
    """``Job.from_json(event["data"])`` of a webhook, then ``.download()``: AttributeError on None."""
    job = sdk.Job.from_json(json.loads(_job("succeeded")))
    with pytest.raises(RuntimeError, match="not read through a Client"):
        job.download("x.png")


def test_the_sdks_copies_of_server_decisions_match_the_server():
    """The SDK imports nothing of the server, so what it must agree on is copied: pinned here, one decision."""
    from upscaler_client import types, webhooks

    from shared.settings import MIN_WEBHOOK_KEY_BYTES
    from shared.signing import WEBHOOK_SECRET_PREFIX
    from shared.states import TERMINAL

    assert set(types.TERMINAL) == {status.value for status in TERMINAL}
    assert webhooks.SECRET_PREFIX == WEBHOOK_SECRET_PREFIX and webhooks.MIN_KEY_BYTES == MIN_WEBHOOK_KEY_BYTES
    from upscaler_client import client

    from shared.limits import MAX_WAIT_SECONDS

    assert client.MAX_PREFER_WAIT == MAX_WAIT_SECONDS  # create(wait=N) refuses what the API would not honour


def test_a_proxy_that_cannot_be_reached_never_reached_the_api(monkeypatch):
    """Behind a proxy (HTTPS_PROXY, ``client.http.proxies``) a refused connect to the proxy is urllib3's
    ProxyError around NewConnectionError: a submit said its job may have been created, and a rotation was not
    retried, though nothing left the machine."""
    import socket

    from cli.processes import free_port
    from tests.dns import one_internal_name

    # no name server asked: the proxy's address resolves to itself, the API's name to nothing (the proxy's to look up)
    monkeypatch.setattr(socket, "getaddrinfo", one_internal_name("127.0.0.1", "127.0.0.1"))
    client = sdk.Client("http://upscaler.invalid:8000", "upk_x", max_retries=1, backoff=0.01)
    client.http.trust_env = False  # only the proxy given here
    client.http.proxies = {"http": f"http://127.0.0.1:{free_port()}"}  # nothing listens there
    with pytest.raises(sdk.ConnectionError, match="cannot reach") as refused:
        client.jobs.create(b"image", scale=2)
    assert refused.value.sent is False and "may have been created" not in str(refused.value)
    with pytest.raises(sdk.ConnectionError, match="cannot reach") as rotation:
        client.rotate_webhook_secret()
    assert rotation.value.sent is False


def test_usage_reads_the_apis_utc_times_on_every_python_the_sdk_supports(request, monkeypatch):
    """The API writes UTC times with a ``Z`` (pydantic), which ``datetime.fromisoformat`` reads only from Python
    3.11: on 3.10, which the SDK's pyproject allows, ``client.usage()`` raised ValueError on every answer. 3.10's
    parser is stood in for here (the suite runs on a newer Python)."""
    import tomllib
    from datetime import UTC, datetime

    from upscaler_client import types

    pyproject = tomllib.loads((request.config.rootpath / "clients" / "python" / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == ">=3.10"

    class Python310(datetime):
        @classmethod
        def fromisoformat(cls, text: str) -> datetime:
            if text.endswith("Z"):
                raise ValueError(f"Invalid isoformat string: {text!r}")
            return datetime.fromisoformat(text)

    monkeypatch.setattr(types, "datetime", Python310)
    usage = sdk.Usage.from_json({"tenant": "acme", "requests": {"limit_per_minute": None},
                                 "active_jobs": {"queued": 0, "running": 0, "limit": None},
                                 "daily": {"used_megapixels": None, "limit_megapixels": None,
                                           "remaining_megapixels": None, "resets_at": "2026-11-30T00:00:00Z"}})
    assert usage.resets_at == datetime(2026, 11, 30, tzinfo=UTC)


def test_a_result_the_job_gave_no_link_for_is_fetched_through_the_apis_redirect(tmp_path):
    """S3 that cannot sign for a moment: the job reads with ``result_url`` null and /result answers 503 with
    Retry-After, retried; once it signs again /result answers its 303, and download raised
    ``409 result_not_ready: the job is succeeded`` instead of following it."""
    png = image_bytes(width=20, height=10)
    fake = _FakeApi([(200, {}, _job("succeeded", result_url=None, output={"bytes": len(png), "filename": "x.png"}))])
    fake.answers += [(503, {"Retry-After": "0", "Content-Type": "application/problem+json"},
                      b'{"code": "service_unavailable", "detail": "object storage cannot sign a link now"}'),
                     (303, {"Location": f"{fake.base}/signed/x.png"}, b""),
                     (200, {"Content-Type": "image/png"}, png)]
    try:
        saved = sdk.Client(fake.base, "k", max_retries=2, backoff=0.01).jobs.download("j1", tmp_path / "x.png")
    finally:
        fake.close()
    assert saved.read_bytes() == png
    assert [path for _, path in fake.requests] == ["/v1/jobs/j1", "/v1/jobs/j1/result", "/v1/jobs/j1/result",
                                                   "/signed/x.png"]
    assert "Authorization" not in fake.headers[-1]  # the signed link carries its own credential
