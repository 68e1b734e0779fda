"""Polling, listing, results, models, health and the error shape of read endpoints."""

import io
import json

import pytest
from PIL import Image

from shared.models import Job, utcnow
from shared.signing import signed_query
from shared.storage import new_key
from shared.tenants import env_tenant
from tests.conftest import SECRET, image_bytes
from tests.factories import make_job, seconds_ago


def succeeded_job(app, db_session, fmt="png", tenant="public"):
    storage = app.extensions["upscaler"].storage
    key = new_key("results", "png")
    storage.put_bytes(key, image_bytes(width=16, height=12, fmt=fmt.upper()), "image/png")
    return make_job(db_session, status="succeeded", output_key=key, output_width=16, output_height=12,
                    output_bytes=100, progress=1.0, finished_at=utcnow(), output_format=fmt, tenant=tenant)


def test_get_job_shows_status_progress_and_sizes(client, db_session):
    job = make_job(db_session, status="running", progress=0.5, attempts=1, started_at=utcnow())
    response = client.get(f"/v1/jobs/{job.id}")
    body = response.get_json()
    assert response.status_code == 200
    assert (body["status"], body["progress"], body["attempts"]) == ("running", 0.5, 1)
    assert body["output"]["width"] == 16 and body["result_url"] is None
    assert response.headers["Retry-After"]


def test_a_finished_jobs_ran_record_is_shown_whole(client, db_session):
    ran = {"model": "residual_sr_cond", "strength": 0.221, "reason": "lossy WEBP, quantizer 25.4 of 127",
           "input": {"format": "WEBP", "lossy": True, "jpeg_quality": None, "noise_sigma": 1.2, "jpeg_grid": None,
                     "colour_noise_sigma": 0.3, "white_noise_sigma": 0.4, "quantizer": 25.4,
                     "earlier_jpeg_quality": None, "stroke_ratio": 0.9},
           "network_scales": [2], "resampled": False, "precision": "bfloat16", "bands": 0, "bits": 8}
    job = make_job(db_session, status="succeeded", progress=1.0, attempts=1, ran=ran)
    assert client.get(f"/v1/jobs/{job.id}").get_json()["ran"] == ran


def test_unknown_job_is_404_problem(client):
    response = client.get("/v1/jobs/doesnotexist")
    assert response.status_code == 404
    assert response.content_type == "application/problem+json"
    assert response.get_json()["code"] == "not_found"


def test_failed_job_carries_its_error(client, db_session):
    job = make_job(db_session, status="failed", error_code="input_unreadable", error_message="bad bytes")
    body = client.get(f"/v1/jobs/{job.id}").get_json()
    assert body["error"] == {"code": "input_unreadable", "message": "bad bytes"}


def test_result_of_an_unfinished_job_is_409(client, db_session):
    job = make_job(db_session)
    response = client.get(f"/v1/jobs/{job.id}/result")
    body = response.get_json()
    assert (response.status_code, body["code"], body["job_status"]) == (409, "result_not_ready", "queued")


def test_local_result_is_streamed_and_signed_link_works(client, app, db_session):
    job = succeeded_job(app, db_session)
    response = client.get(f"/v1/jobs/{job.id}/result")
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert Image.open(io.BytesIO(response.data)).size == (16, 12)
    body = client.get(f"/v1/jobs/{job.id}").get_json()
    assert body["links"]["result"] == f"/v1/jobs/{job.id}/result"
    link = client.get(body["result_url"].split("localhost", 1)[-1])
    assert link.status_code == 200 and link.data == response.data


def test_signed_file_links_reject_tampering_and_expiry(client, app, db_session):
    job = succeeded_job(app, db_session)
    good = signed_query(SECRET, job.output_key, 60)
    assert client.get(f"/v1/files/{job.output_key}", query_string=good).status_code == 200
    bad = {**good, "signature": "f" * 64}
    response = client.get(f"/v1/files/{job.output_key}", query_string=bad)
    assert (response.status_code, response.get_json()["code"]) == (403, "invalid_signature")
    other = client.get("/v1/files/results/j/other.png", query_string=good)
    assert other.get_json()["code"] == "invalid_signature"
    expired = signed_query(SECRET, job.output_key, ttl=-1)
    response = client.get(f"/v1/files/{job.output_key}", query_string=expired)
    assert (response.status_code, response.get_json()["code"]) == (410, "link_expired")


@pytest.mark.parametrize("key", ["../db.sqlite", "results/../../db.sqlite"])
def test_a_validly_signed_link_outside_storage_is_404(client, key):
    """Issue 10 #6: even a correctly signed escaping path is "no such file", never a 500."""
    response = client.get(f"/v1/files/{key}", query_string=signed_query(SECRET, key, 60))
    assert (response.status_code, response.get_json()["code"]) == (404, "not_found")


def test_s3_result_redirects_to_a_working_presigned_url(s3_settings, db_session):
    import requests

    from api import create_app

    app = create_app(s3_settings)
    job = succeeded_job(app, db_session)
    response = app.test_client().get(f"/v1/jobs/{job.id}/result")
    assert response.status_code == 303
    download = requests.get(response.headers["Location"], timeout=10)
    assert download.status_code == 200
    assert Image.open(io.BytesIO(download.content)).size == (16, 12)


def test_s3_that_cannot_sign_a_link_leaves_the_job_readable_and_its_result_503(s3_settings, db_session, monkeypatch):
    """Signing needs credentials: with a role whose refresh failed (botocore's NoCredentialsError), reading the job,
    the page of jobs holding it and /result were all 500 internal_error."""
    from botocore.exceptions import NoCredentialsError

    from api import create_app

    app = create_app(s3_settings)
    job = succeeded_job(app, db_session)
    client = app.test_client()

    def no_credentials(*args, **kwargs):
        raise NoCredentialsError()

    monkeypatch.setattr(app.extensions["upscaler"].storage.signer, "generate_presigned_url", no_credentials)
    read = client.get(f"/v1/jobs/{job.id}")
    assert read.status_code == 200 and read.get_json()["status"] == "succeeded"
    assert read.get_json()["result_url"] is None
    assert client.get("/v1/jobs").status_code == 200
    result = client.get(f"/v1/jobs/{job.id}/result")
    assert (result.status_code, result.get_json()["code"]) == (503, "service_unavailable")
    assert result.headers["Retry-After"] == "10"


def test_list_is_newest_first_with_cursor_pages(client, db_session):
    ids = [make_job(db_session, created_at=seconds_ago(50 - i)).id for i in range(5)]
    make_job(db_session, status="failed", created_at=seconds_ago(1))
    first = client.get("/v1/jobs?status=queued&limit=2").get_json()
    assert [j["id"] for j in first["data"]] == ids[::-1][:2]
    second = client.get(f"/v1/jobs?status=queued&limit=2&cursor={first['next_cursor']}").get_json()
    third = client.get(f"/v1/jobs?status=queued&limit=2&cursor={second['next_cursor']}").get_json()
    assert [j["id"] for j in second["data"] + third["data"]] == ids[::-1][2:]
    assert third["next_cursor"] is None
    assert len(client.get("/v1/jobs").get_json()["data"]) == 6
    # the same instant as the first page's cursor, written at +05:00: the same page (SQLite compared the offset's
    # text and gave jobs of other hours)
    import base64
    from datetime import datetime, timedelta, timezone

    when, job_id = base64.urlsafe_b64decode(first["next_cursor"] + "==").decode().split("|")
    shifted = datetime.fromisoformat(when).astimezone(timezone(timedelta(hours=5))).isoformat()
    cursor = base64.urlsafe_b64encode(f"{shifted}|{job_id}".encode()).decode().rstrip("=")
    assert client.get(f"/v1/jobs?status=queued&limit=2&cursor={cursor}").get_json() == second


@pytest.mark.parametrize("query,status,code", [("limit=0", 422, "invalid_parameter"),
                                               ("limit=1000", 422, "invalid_parameter"),
                                               ("status=done", 422, "invalid_parameter"),
                                               ("cursor=%%%", 400, "invalid_cursor"),
                                               # base64 of "2099-01-01T00:00:00|z": a time without a zone
                                               ("cursor=MjA5OS0wMS0wMVQwMDowMDowMHx6", 400, "invalid_cursor"),
                                               # "2026-01-01T00:00:00+00:00|a<NUL>b": PostgreSQL refuses a NUL (500)
                                               ("cursor=MjAyNi0wMS0wMVQwMDowMDowMCswMDowMHxhAGI", 400,
                                                "invalid_cursor"),
                                               # "9999-12-31T23:59:59-23:59|a...": past year 9999 in UTC (a 500)
                                               ("cursor=OTk5OS0xMi0zMVQyMzo1OTo1OS0yMzo1OXxhYWFhYWFhYWFhYWFhYWFhYWF"
                                                "hYWFhYWFhYWFhYWFhYWFhYQ", 400, "invalid_cursor")])
def test_list_rejects_bad_queries(client, query, status, code):
    response = client.get(f"/v1/jobs?{query}")
    assert (response.status_code, response.get_json()["code"]) == (status, code)


def test_models_lists_bicubic_the_networks_and_the_default_auto_route(client):
    models = {m["name"]: m for m in client.get("/v1/models").get_json()["data"]}
    assert models["bicubic"]["scales"] == [2, 3, 4] and models["bicubic"]["denoise"] is False
    assert models["auto"]["default"] is True and models["auto"]["denoise"] is True
    assert models["auto"]["routes"] == {"fidelity": "residual_sr", "robust": "residual_sr_cond"}
    assert models["residual_sr"]["arch"] == "residual_sr" and models["residual_sr"]["denoise"] is False
    assert models["residual_sr"]["parameters"]["x4"] > 100_000
    assert models["residual_sr"]["benchmark_psnr_y"]["clean"]["set5"]["x4"] > 31
    robust = models["residual_sr_cond"]
    assert robust["denoise"] is True and robust["training_degradation"]["jpeg_quality"] == [30, 95]


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"] == {"database": "ok", "redis": "ok", "storage": "ok"}


def test_readiness_names_an_unreachable_redis_or_store_but_stays_ready(settings, tmp_path):
    """Every API pod shares Redis and storage: not ready took them all out of the Service at once, and clients got
    the ingress's bare 503 instead of the API's own answers (a submit is accepted without Redis)."""
    from api import create_app
    from api.schemas import Health

    client = create_app(settings.with_overrides(redis_url="redis://127.0.0.1:9/0")).test_client()
    response = client.get("/readyz")
    assert response.status_code == 200 and response.get_json()["status"] == "degraded"
    Health.model_validate(response.get_json())  # the answer the OpenAPI document declares
    assert response.get_json()["checks"]["redis"].startswith("error")
    assert response.get_json()["checks"]["database"] == "ok"
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the storage folder should be")
    client = create_app(settings.with_overrides(storage_dir=blocked)).test_client()
    response = client.get("/readyz")
    assert (response.status_code, response.get_json()["status"]) == (200, "degraded")
    assert response.get_json()["checks"]["storage"].startswith("error")


def test_readiness_answers_503_soon_when_the_database_and_the_store_accept_but_never_answer(settings):
    """A partition: libpq waited for ever and the S3 client 3 x 30 s, each probe held an API thread, and probes
    piling up starved /healthz, so liveness restarted every pod. A listener on loopback that accepts and never
    says a word stands in for both."""
    import socket
    import threading
    import time

    from api import create_app

    silent = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    threading.Thread(target=lambda: [held.append(silent.accept()[0]) for _ in range(20)], daemon=True).start()
    port = silent.getsockname()[1]
    hung = settings.with_overrides(database_url=f"postgresql://u:p@127.0.0.1:{port}/db", storage="s3",
                                   s3_endpoint_url=f"http://127.0.0.1:{port}", s3_access_key_id="k",
                                   s3_secret_access_key="s")
    client = create_app(hung).test_client()
    started = time.monotonic()
    try:
        response = client.get("/readyz")
    finally:
        silent.close()
        for connection in held:
            connection.close()
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["database"].startswith("error") and checks["storage"].startswith("error")
    assert time.monotonic() - started < 20  # connect timeout 5 s, one probe try of 2 s: not for ever, not 90 s


class _FreezableProxy:
    """A loopback TCP proxy to ``port`` that can stop forwarding: the database's side of a partition (connections
    stay open, nothing answers)."""

    def __init__(self, port: int):
        import socket
        import threading

        self.upstream, self.frozen = port, threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source, sink) -> None:
        try:
            while data := source.recv(65536):
                if self.frozen.is_set():
                    continue  # swallowed: the peer waits for an answer that never comes
                sink.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()


def test_readiness_says_503_soon_when_the_database_goes_silent_under_a_pooled_connection(settings, postgres):
    """The probe's query ran on a pooled connection; with the database partitioned away that connection blocked
    for good (the connect timeout bounds new connections only): probes piled up on the API's threads. Readiness
    now connects afresh each time."""
    import time

    from api import create_app

    database = postgres.create_database()
    from shared.migrate import upgrade

    upgrade(database)
    proxy = _FreezableProxy(int(database.rsplit(":", 1)[1].split("/", 1)[0]))
    try:
        through = database.replace(database.rsplit("@", 1)[1].split("/", 1)[0], f"127.0.0.1:{proxy.port}")
        client = create_app(settings.with_overrides(database_url=through)).test_client()
        assert client.get("/readyz").status_code == 200
        assert client.get("/v1/jobs").status_code == 200  # the request pool holds a connection now
        proxy.frozen.set()
        started = time.monotonic()
        response = client.get("/readyz")
        assert response.status_code == 503 and response.get_json()["checks"]["database"].startswith("error")
        assert time.monotonic() - started < 15  # the connect timeout (5 s), not for ever
    finally:
        proxy.close()


def test_readiness_is_503_until_the_database_is_migrated(settings, tmp_path):
    """A pod started before its migration ran passed /readyz and failed every request (no such column)."""
    from api import create_app
    from shared.migrate import revisions, upgrade

    head, known = revisions()
    url = f"sqlite:///{tmp_path / 'old.db'}"
    client = create_app(settings.with_overrides(database_url=url)).test_client()
    never = client.get("/readyz")  # never migrated: no alembic_version table (it said only "OperationalError")
    assert never.status_code == 503
    assert never.get_json()["checks"]["database"] == \
        f"error: schema at nothing, this code needs {head}: run upscaler migrate"
    upgrade(url, known[1])  # the revision before the head
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["database"] == \
        f"error: schema at {known[1]}, this code needs {head}: run upscaler migrate"
    upgrade(url)
    assert client.get("/readyz").status_code == 200


def test_wrong_method_is_405_problem(client):
    response = client.delete("/v1/models")
    assert (response.status_code, response.get_json()["code"]) == (405, "method_not_allowed")


def test_unexpected_errors_are_500_problems(app, client, monkeypatch):
    def explode(*_a, **_k):
        raise RuntimeError("boom")

    monkeypatch.setattr("api.routes.jobs.job_out", explode)  # the failure happens while presenting the job
    response = client.post("/v1/jobs", data={"image": (io.BytesIO(image_bytes()), "a.png"), "model": "bicubic"},
                           content_type="multipart/form-data")
    assert (response.status_code, response.get_json()["code"]) == (500, "internal_error")
    assert "boom" not in response.get_data(as_text=True)


def test_every_answer_has_a_request_id_that_an_error_body_and_the_log_lines_repeat(client, monkeypatch, caplog):
    """An operator could not match a customer's 500 to its traceback: no request id anywhere."""
    import logging

    from shared.logs import JobIdFilter, JsonFormatter, TextFormatter

    def explode(*_a, **_k):
        logging.getLogger("api.routes.jobs").warning("about to fail")
        raise RuntimeError("boom")

    monkeypatch.setattr("api.routes.jobs.job_out", explode)
    caplog.handler.addFilter(JobIdFilter())
    response = client.post("/v1/jobs", data={"image": (io.BytesIO(image_bytes()), "a.png"), "model": "bicubic"},
                           content_type="multipart/form-data", headers={"X-Request-Id": "lb-7f3a.1"})
    assert response.headers["X-Request-Id"] == response.get_json()["request_id"] == "lb-7f3a.1"
    failed = [r for r in caplog.records if r.name == "api.errors"]
    assert failed and failed[0].request_id == "lb-7f3a.1" and "POST /v1/jobs" in failed[0].getMessage()
    warned = next(r for r in caplog.records if r.getMessage() == "about to fail")
    assert json.loads(JsonFormatter().format(warned))["request_id"] == "lb-7f3a.1"
    assert TextFormatter("%(message)s").format(warned) == "about to fail [request_id=lb-7f3a.1]"
    for sent in ("a b", "x" * 200, "evil;Set-Cookie=a", "\u00e9", ""):  # not taken: one is made up instead
        made = client.get("/v1/models", headers={"X-Request-Id": sent} if sent else {})
        assert made.headers["X-Request-Id"] != sent and len(made.headers["X-Request-Id"]) == 32
    missing = client.get("/v1/jobs/" + "0" * 32)
    assert missing.get_json()["request_id"] == missing.headers["X-Request-Id"]


def test_the_web_page_is_served_and_uses_the_api(client):
    response = client.get("/")
    page = response.get_data(as_text=True) + client.get("/assets/app.js").get_data(as_text=True)
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert 'api("v1/jobs"' in page and "v1/models" in page
    assert 'type="file" accept="image/*,.heic,.heif,.avif" multiple' in page
    # (what the page does is tested in a real browser: tests/web/test_page.py)


def test_api_keys_protect_v1_but_not_health_docs_or_signed_links(settings, db_session):
    from api import create_app

    app = create_app(settings.with_overrides(api_keys="k-one, k-two"))
    client = app.test_client()
    response = client.get("/v1/jobs")
    assert (response.status_code, response.get_json()["code"]) == (401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/v1/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/v1/jobs", headers={"Authorization": "Bearer k-two"}).status_code == 200
    for public in ("/healthz", "/v1/openapi.json", "/", "/metrics"):
        assert client.get(public).status_code == 200, public
    job = succeeded_job(app, db_session, tenant=env_tenant("k-one"))
    link = client.get("/v1/jobs/" + job.id, headers={"Authorization": "Bearer k-one"}).get_json()["result_url"]
    assert client.get(link.split("localhost", 1)[-1]).status_code == 200


def test_results_download_under_a_name_that_says_what_it_is(client, app, db_session):
    job = succeeded_job(app, db_session)
    db_session.query(Job).filter_by(id=job.id).update({"input_filename": "Studio shot (final).JPG", "scale": 4})
    db_session.commit()
    body = client.get(f"/v1/jobs/{job.id}").get_json()
    assert body["output"]["filename"] == "Studio_shot_final_x4.png"
    for response in (client.get(f"/v1/jobs/{job.id}/result"), client.get(body["result_url"].split("localhost", 1)[-1])):
        # a download on every path (the local /result was served inline, S3's link and /v1/files as attachments)
        assert response.headers["Content-Disposition"] == "attachment; filename=Studio_shot_final_x4.png"
    # the name is signed with the link: a holder who changes it has a forged link
    query = {**signed_query(SECRET, job.output_key, 60, name="Studio_shot_final_x4.png"), "name": "Pay_now.png"}
    assert client.get(f"/v1/files/{job.output_key}", query_string=query).get_json()["code"] == "invalid_signature"
    # and one signed with another extension still saves under the key's own name
    query = signed_query(SECRET, job.output_key, 60, name="evil.exe")
    disposition = client.get(f"/v1/files/{job.output_key}", query_string=query).headers["Content-Disposition"]
    assert job.output_key.rsplit("/", 1)[-1] in disposition
    db_session.query(Job).filter_by(id=job.id).update({"input_filename": "写真.JPG"})
    db_session.commit()
    body = client.get(f"/v1/jobs/{job.id}").get_json()
    assert body["output"]["filename"] == "写真_x4.png"
    for response in (client.get(f"/v1/jobs/{job.id}/result"), client.get(body["result_url"].split("localhost", 1)[-1])):
        assert "filename*=UTF-8''%E5%86%99%E7%9C%9F_x4.png" in response.headers["Content-Disposition"]


def test_result_filenames_for_sizes_urls_and_odd_names():
    from shared.job_view import result_filename

    def job(**values):
        return Job(**{"output_format": "tiff", "output_width": 3000, "output_height": 2000, **values})

    assert result_filename(job(input_filename="scan.tif", target_width=3000)) == "scan_3000x2000.tif"
    assert result_filename(job(input_filename="a.b.png", scale=1.5)) == "a.b_x1.5.tif"
    assert result_filename(job(input_url="https://127.0.0.1/img/cat.jpg?x=1", scale=2)) == "cat_x2.tif"
    assert result_filename(job(input_filename="../../..", scale=2)) == "image_x2.tif"
    # any script's letters stay (ASCII alone made a batch of Japanese names one image_x2.tif after another)
    assert result_filename(job(input_filename="写真-001.jpg", scale=2)) == "写真-001_x2.tif"
    assert result_filename(job(input_filename="Ørsted façade.jpg", scale=2)) == "Ørsted_façade_x2.tif"
    assert result_filename(job(input_filename=None, input_url="https://a.example/%E5%86%99%E7%9C%9F.jpg?s=1",
                               scale=2)) == "写真_x2.tif"


def test_a_queued_job_says_where_it_stands_in_the_queue(client, db_session):
    first = make_job(db_session, created_at=seconds_ago(30))
    make_job(db_session, status="running", created_at=seconds_ago(20))
    make_job(db_session, created_at=seconds_ago(10), tenant="someone-else")
    third = make_job(db_session)
    assert client.get(f"/v1/jobs/{first.id}").get_json()["queue_position"] == 1
    assert client.get(f"/v1/jobs/{third.id}").get_json()["queue_position"] == 3  # other tenants' jobs count
    running = make_job(db_session, status="running")
    assert client.get(f"/v1/jobs/{running.id}").get_json()["queue_position"] is None


@pytest.mark.parametrize("path", ["/v1/jobs/a%00b", "/v1/jobs/a%00b/result", "/v1/jobs/a%00b/deliveries"])
def test_an_id_no_job_can_have_is_not_found(client, path):
    """A NUL in an id reached PostgreSQL, which refuses it in text: a 500 instead of 404."""
    response = client.get(path)
    assert (response.status_code, response.get_json()["code"]) == (404, "not_found")


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_result_deleted_under_its_job_is_404_on_both_backends(backend, settings, request, db_session):
    """On S3 the API redirected (303) to a presigned URL of an object no longer there, and the customer got the
    store's own XML error page; the object is looked up first, as the local backend did."""
    from api import create_app

    app = create_app(settings if backend == "local" else request.getfixturevalue("s3_settings"))
    job = succeeded_job(app, db_session)
    app.extensions["upscaler"].storage.delete(job.output_key)
    response = app.test_client().get(f"/v1/jobs/{job.id}/result")
    assert (response.status_code, response.get_json()["code"]) == (404, "not_found")


def test_a_result_asked_of_an_unreachable_store_is_503_with_retry_after(settings, db_session):
    from api import create_app
    from cli.processes import free_port

    app = create_app(settings.with_overrides(storage="s3", s3_endpoint_url=f"http://127.0.0.1:{free_port()}",
                                             s3_access_key_id="k", s3_secret_access_key="s"))
    job = make_job(db_session, status="succeeded", output_key=new_key("results", "png"), finished_at=utcnow())
    response = app.test_client().get(f"/v1/jobs/{job.id}/result")
    assert (response.status_code, response.get_json()["code"]) == (503, "service_unavailable")
    assert response.headers["Retry-After"] == "10"


def test_a_range_past_the_end_of_a_result_is_416_with_the_files_length(app, client, db_session):
    """``Range: bytes=999999-`` on a 300-byte result answered 400 bad_request without ``Content-Range``: a
    resumable downloader could not tell that the file was complete or how long it is."""
    job = succeeded_job(app, db_session)
    length = len(app.extensions["upscaler"].storage.get_bytes(job.output_key))
    response = client.get(f"/v1/jobs/{job.id}/result", headers={"Range": "bytes=999999-"})
    assert (response.status_code, response.get_json()["code"]) == (416, "range_not_satisfiable")
    assert response.headers["Content-Range"] == f"bytes */{length}"
    partial = client.get(f"/v1/jobs/{job.id}/result", headers={"Range": "bytes=0-3"})
    assert (partial.status_code, partial.data) == (206, b"\x89PNG")


@pytest.mark.parametrize("asked", ["bytes=0-1,5-6", "items=0-5", "bytes=abc"])
def test_a_range_not_served_as_asked_is_ignored_and_the_whole_file_sent(app, client, db_session, asked):
    """Several ranges, another unit or bad syntax were 416, which a resumable downloader reads as "complete":
    RFC 9110 lets a server ignore such a Range and send the whole file, as S3 does."""
    job = succeeded_job(app, db_session)
    whole = app.extensions["upscaler"].storage.get_bytes(job.output_key)
    response = client.get(f"/v1/jobs/{job.id}/result", headers={"Range": asked})
    assert (response.status_code, response.data) == (200, whole)


def test_a_failed_precondition_is_a_412_problem_without_the_file(app, client, db_session):
    """Werkzeug answered 412 with the whole image as its body."""
    job = succeeded_job(app, db_session)
    etag = client.get(f"/v1/jobs/{job.id}/result").headers["ETag"]
    response = client.get(f"/v1/jobs/{job.id}/result", headers={"If-Match": '"another"'})
    assert (response.status_code, response.get_json()["code"]) == (412, "precondition_failed")
    assert response.content_type == "application/problem+json"
    assert client.get(f"/v1/jobs/{job.id}/result", headers={"If-Match": etag}).status_code == 200


def test_download_preconditions_are_read_in_rfc_9110s_order_before_any_range(app, client, db_session):
    """If-Unmodified-Since was never read (the whole file where 412 was due), a Range was served before If-Match
    (206 where 412 was due) and before a matching If-None-Match (206 where 304 was due)."""
    job = succeeded_job(app, db_session)
    url = f"/v1/jobs/{job.id}/result"
    whole = client.get(url)
    etag, modified = whole.headers["ETag"], whole.headers["Last-Modified"]
    long_ago, later = "Mon, 01 Jan 2001 00:00:00 GMT", "Fri, 01 Jan 2100 00:00:00 GMT"

    def status(**headers):
        return client.get(url, headers={name.replace("_", "-"): value for name, value in headers.items()}).status_code

    assert status(If_Unmodified_Since=long_ago) == 412
    assert status(If_Unmodified_Since=later) == 200
    assert status(If_Match='"another"', Range="bytes=0-9") == 412
    assert status(If_Match=etag, Range="bytes=0-9") == 206
    assert status(If_Match="*", If_Unmodified_Since=long_ago) == 200  # If-Match present: the date is not read
    assert status(If_None_Match=etag, Range="bytes=0-9") == 304
    assert status(If_None_Match=f"W/{etag}") == 304  # compared weakly
    assert status(If_None_Match='"another"', If_Modified_Since=later) == 200  # If-None-Match present: no date
    assert status(If_Modified_Since=modified) == 304
    assert status(If_Modified_Since=long_ago) == 200
    assert status(If_Unmodified_Since="not a date") == 200
    not_modified = client.get(url, headers={"If-None-Match": etag})
    assert not_modified.data == b"" and not_modified.headers["ETag"] == etag


def test_blank_list_parameters_mean_their_defaults(client, db_session):
    """``?status=&limit=&cursor=`` (a client filling the query from unset variables) was 422; blank is absent, as
    on the submit form."""
    make_job(db_session)
    response = client.get("/v1/jobs?status=&limit=&cursor=")
    assert response.status_code == 200
    assert len(response.get_json()["data"]) == 1


def test_a_result_deleted_by_retention_during_the_request_is_404_not_500(client, app, db_session, monkeypatch):
    """Both download routes check that the file exists, then open it: a retention pass deleting it in between
    (the sweeper's expire_old_jobs) answered a 500 internal_error."""
    job = succeeded_job(app, db_session)
    storage = app.extensions["upscaler"].storage
    exists = storage.exists

    def then_retention(key):
        found = exists(key)
        storage.delete(key)
        return found

    monkeypatch.setattr(storage, "exists", then_retention)
    for url, query in ((f"/v1/jobs/{job.id}/result", None),
                       (f"/v1/files/{job.output_key}", signed_query(SECRET, job.output_key, 60))):
        if not exists(job.output_key):
            storage.put_bytes(job.output_key, image_bytes(width=16, height=12), "image/png")
        response = client.get(url, query_string=query)
        assert (response.status_code, response.get_json()["code"]) == (404, "not_found"), url


def test_the_metrics_content_type_names_each_parameter_once(client):
    """It read 'text/plain; version=1.0.0; charset=utf-8; charset=utf-8': Prometheus 3 fails a scrape whose
    Content-Type it cannot parse, and Go's parser refuses a parameter given twice."""
    content_type = client.get("/metrics").headers["Content-Type"]
    media, *params = (part.strip() for part in content_type.split(";"))
    names = [param.split("=", 1)[0].lower() for param in params]
    assert media == "text/plain" and "version" in names and len(names) == len(set(names)), content_type
