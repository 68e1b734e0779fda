"""Cancel, idempotency keys, webhook options and deliveries, retention, as the API shows them."""

import io
from datetime import timedelta

import pytest
from sqlalchemy import select

from shared.models import IdempotencyKey, Job, WebhookDelivery, utcnow
from tests.api.test_submit import submit
from tests.conftest import image_bytes
from tests.factories import make_job
from worker.context import WorkerContext
from worker.sweeper import expire_old_jobs


def test_cancel_a_queued_job_records_the_webhook_event(client, db_session, receiver):
    job_id = submit(client, webhook_url=receiver.url).get_json()["id"]
    response = client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 200 and response.get_json()["status"] == "canceled"
    assert [d.event for d in db_session.query(WebhookDelivery).filter_by(job_id=job_id)] == ["job.canceled"]
    again = client.post(f"/v1/jobs/{job_id}/cancel")
    assert again.status_code == 200  # canceling twice is harmless
    assert db_session.query(WebhookDelivery).filter_by(job_id=job_id).count() == 1


def test_finished_jobs_are_not_cancelable(client, db_session):
    job = make_job(db_session, status="succeeded")
    response = client.post(f"/v1/jobs/{job.id}/cancel")
    body = response.get_json()
    assert (response.status_code, body["code"], body["job_status"]) == (409, "not_cancelable", "succeeded")
    assert client.post("/v1/jobs/nope/cancel").status_code == 404


def test_same_idempotency_key_and_request_returns_the_same_job(client, db_session):
    image = image_bytes(seed=3)
    first = client.post(
        "/v1/jobs", data={"image": (io.BytesIO(image), "a.png"), "scale": "2", "model": "bicubic"},
        headers={"Idempotency-Key": "order-42"}, content_type="multipart/form-data")
    second = client.post("/v1/jobs", data={"image": (io.BytesIO(image), "b.png"), "scale": "2", "model": "bicubic"},
                         headers={"Idempotency-Key": "order-42"}, content_type="multipart/form-data")
    # the replay answers as the first did while the job is unfinished: 202, when to poll, its place in the queue
    assert (first.status_code, second.status_code) == (202, 202)
    assert second.headers["Retry-After"] == "2" and second.get_json()["queue_position"] == 1
    assert first.get_json()["id"] == second.get_json()["id"]
    assert second.headers["Location"] == f"/v1/jobs/{first.get_json()['id']}"
    db_session.query(Job).filter_by(id=first.get_json()["id"]).update({"status": "running"})
    db_session.commit()  # running: no place in the queue (it counted the queued jobs before it, GET said none)
    third = client.post("/v1/jobs", data={"image": (io.BytesIO(image), "c.png"), "scale": "2", "model": "bicubic"},
                        headers={"Idempotency-Key": "order-42"}, content_type="multipart/form-data")
    assert (third.status_code, third.get_json()["status"], third.get_json()["queue_position"]) == (202, "running", None)
    assert db_session.query(Job).count() == 1


def test_a_retry_racing_its_first_request_past_a_limit_gets_the_job_not_a_429(settings, db_session, monkeypatch):
    """The key was looked up before the quota charge: a retry sent while the first request was in flight (its row
    not yet visible) got 429 quota_exceeded (Retry-After until midnight) for a job that existed, and a client that
    then sent it afresh paid twice."""
    import uuid

    from api import create_app, submission

    key = f"k-race-{uuid.uuid4().hex[:8]}"  # a tenant of its own: the day's count lives in the shared Redis
    client = create_app(settings.with_overrides(daily_megapixels=1, api_keys=key)).test_client()
    form = lambda: {"image": (io.BytesIO(image_bytes(width=500, height=500)), "a.png"),  # noqa: E731
                    "scale": "2", "model": "bicubic"}  # 1 MP out: the day's whole quota
    headers = {"Idempotency-Key": "race-1", "Authorization": f"Bearer {key}"}
    first = client.post("/v1/jobs", data=form(), headers=headers, content_type="multipart/form-data")
    real, calls = submission.find_previous, []

    def in_flight_once(*args):  # the first lookup runs before the first request's row is committed
        calls.append(args)
        return None if len(calls) == 1 else real(*args)

    monkeypatch.setattr(submission, "find_previous", in_flight_once)
    second = client.post("/v1/jobs", data=form(), headers=headers, content_type="multipart/form-data")
    assert first.status_code == 202 and second.status_code == 202, second.get_json()
    assert second.get_json()["id"] == first.get_json()["id"] and len(calls) == 2
    assert db_session.query(Job).count() == 1


def test_same_key_with_a_different_request_is_409(client):
    post = lambda scale: client.post(  # noqa: E731
        "/v1/jobs", data={"image": (io.BytesIO(image_bytes()), "a.png"), "scale": scale, "model": "bicubic"},
        headers={"Idempotency-Key": "k1"}, content_type="multipart/form-data")
    assert post("2").status_code == 202
    response = post("3")
    assert (response.status_code, response.get_json()["code"]) == (409, "idempotency_conflict")


def test_expired_idempotency_keys_are_forgotten(client, db_session):
    post = lambda: client.post(  # noqa: E731
        "/v1/jobs", data={"image": (io.BytesIO(image_bytes()), "a.png"), "model": "bicubic"},
        headers={"Idempotency-Key": "old"}, content_type="multipart/form-data")
    first = post().get_json()["id"]
    db_session.scalars(select(IdempotencyKey)).one().created_at = utcnow() - timedelta(days=2)
    db_session.commit()
    second = post()
    assert second.status_code == 202 and second.get_json()["id"] != first


def test_malformed_idempotency_key_is_422(client):
    response = client.post("/v1/jobs", data={"image": (io.BytesIO(image_bytes()), "a.png")},
                           headers={"Idempotency-Key": "x" * 300}, content_type="multipart/form-data")
    assert (response.status_code, response.get_json()["field"]) == (422, "Idempotency-Key")


def test_webhook_to_a_private_address_is_refused_at_submit(settings):
    from api import create_app

    client = create_app(settings.with_overrides(webhook_allow_private=False)).test_client()
    response = submit(client, webhook_url="http://127.0.0.1:9/hook")
    body = response.get_json()
    assert (response.status_code, body["code"], body["field"]) == (422, "webhook_url_refused", "webhook_url")


@pytest.mark.parametrize("events,expected", [("job.started,job.failed", ["job.failed", "job.started"]),
                                             (None, ["job.succeeded", "job.failed", "job.canceled"])])
def test_webhook_events_are_stored_and_shown(client, receiver, events, expected):
    fields = {"webhook_url": receiver.url} | ({"webhook_events": events} if events else {})
    body = submit(client, **fields).get_json()
    assert body["webhook_events"] == expected


def test_unknown_webhook_event_is_422(client, receiver):
    response = submit(client, webhook_url=receiver.url, webhook_events="job.succeeded, job.exploded")
    assert (response.status_code, response.get_json()["field"]) == (422, "webhook_events")
    detail = response.get_json()["detail"]  # says which and what would do, never the pattern
    assert "'job.exploded' is not an event" in detail and "job.started, job.succeeded" in detail
    assert "\\" not in detail and "^" not in detail


def test_deliveries_are_listed_and_can_be_redelivered(client, receiver):
    job_id = submit(client, webhook_url=receiver.url).get_json()["id"]
    client.post(f"/v1/jobs/{job_id}/cancel")
    listed = client.get(f"/v1/jobs/{job_id}/deliveries").get_json()["data"]
    assert [(d["event"], d["status"], d["attempt_log"]) for d in listed] == [("job.canceled", "pending", [])]
    response = client.post(f"/v1/jobs/{job_id}/deliveries/redeliver")
    assert response.status_code == 202 and response.get_json()["id"] == listed[0]["id"]
    missing = client.post(f"/v1/jobs/{job_id}/deliveries/redeliver?delivery_id=msg_nope")
    assert missing.status_code == 404



def test_a_redelivery_while_an_attempt_is_being_made_is_refused(client, db_session):
    from shared import deliveries

    job_id = submit(client, webhook_url="http://127.0.0.1:9/hook").get_json()["id"]
    client.post(f"/v1/jobs/{job_id}/cancel")
    [message] = db_session.query(WebhookDelivery).filter_by(job_id=job_id).all()
    assert deliveries.claim(db_session, message.id, 60)
    db_session.commit()
    busy = client.post(f"/v1/jobs/{job_id}/deliveries/redeliver")
    assert (busy.status_code, busy.get_json()["code"]) == (409, "delivery_in_progress")
    assert busy.headers["Retry-After"] == "5"


def expire(settings) -> int:
    """One retention pass of the sweeper, as a worker process runs it."""
    ctx = WorkerContext.create(settings)
    try:
        return expire_old_jobs(ctx)
    finally:
        ctx.engine.dispose()


def test_retention_deletes_files_and_the_result_reads_expired(client, app, settings, db_session):
    storage = app.extensions["upscaler"].storage
    storage.put_bytes("inputs/old/i.png", image_bytes(), "image/png")
    storage.put_bytes("results/old/r.png", image_bytes(), "image/png")
    old = make_job(db_session, status="succeeded", input_key="inputs/old/i.png", output_key="results/old/r.png",
                   finished_at=utcnow() - timedelta(days=8))
    recent = make_job(db_session, status="succeeded", output_key="results/old/r.png", finished_at=utcnow())
    assert expire(settings) == 1
    assert not storage.exists("inputs/old/i.png") and not storage.exists("results/old/r.png")
    body = client.get(f"/v1/jobs/{old.id}").get_json()
    assert body["expired_at"] is not None and body["result_url"] is None
    assert body["links"]["result"] is None  # it pointed at the 410 below
    assert client.get(f"/v1/jobs/{recent.id}").get_json()["links"]["result"].endswith(f"/v1/jobs/{recent.id}/result")
    response = client.get(f"/v1/jobs/{old.id}/result")
    assert (response.status_code, response.get_json()["code"]) == (410, "result_expired")
    assert client.get(f"/v1/jobs/{recent.id}").get_json()["expired_at"] is None


def test_retention_goes_oldest_first_past_jobs_it_cannot_delete_and_deletes_a_result_last(client, app, settings,
                                                                                          db_session, monkeypatch):
    """Jobs whose objects cannot be deleted now no longer hold the others back (an unordered 200 failing every
    pass stalled retention for all); and a pass cut short keeps the result of the job it stopped at (it deleted
    the result and left a job that said it could be downloaded: GET /result was a 500)."""
    from worker import sweeper

    storage = app.extensions["upscaler"].storage
    for name in ("stuck", "fine", "partial"):
        storage.put_bytes(f"inputs/{name}/i.png", image_bytes(), "image/png")
        storage.put_bytes(f"results/{name}/r.png", image_bytes(), "image/png")
    jobs_by_name = {name: make_job(db_session, status="succeeded", input_key=f"inputs/{name}/i.png",
                                   output_key=f"results/{name}/r.png", finished_at=utcnow() - timedelta(days=days))
                    for name, days in (("stuck", 10), ("partial", 9), ("fine", 8))}
    real_delete = storage.delete

    def refusing(key):
        if key.startswith(("inputs/stuck/", "inputs/partial/")):
            raise sweeper.StorageError(f"cannot delete {key}: permission denied")
        real_delete(key)

    ctx = WorkerContext.create(settings)
    try:
        monkeypatch.setattr(ctx.storage, "delete", refusing)
        assert expire_old_jobs(ctx, limit=1) == 1  # the oldest two fail: the third is reached all the same
    finally:
        ctx.engine.dispose()
    assert client.get(f"/v1/jobs/{jobs_by_name['fine'].id}/result").status_code == 410
    partial = client.get(f"/v1/jobs/{jobs_by_name['partial'].id}/result")
    assert partial.status_code == 200 and storage.exists("results/partial/r.png")  # its result still downloads
    storage.delete("results/partial/r.png")  # gone under the job all the same: a clear 404, not a 500
    gone = client.get(f"/v1/jobs/{jobs_by_name['partial'].id}/result")
    assert (gone.status_code, gone.get_json()["code"]) == (404, "not_found")


def test_retention_deletes_an_upload_a_canceled_attempt_left_behind(app, settings, db_session):
    """A worker died around its upload (staged_output_key set), then the user canceled the job: that object
    once outlived the retention period forever."""
    storage = app.extensions["upscaler"].storage
    storage.put_bytes("inputs/gone/i.png", image_bytes(), "image/png")
    storage.put_bytes("results/gone/staged.png", image_bytes(), "image/png")
    make_job(db_session, status="canceled", input_key="inputs/gone/i.png", staged_output_key="results/gone/staged.png",
             finished_at=utcnow() - timedelta(days=8))
    assert expire(settings) == 1
    assert not storage.exists("results/gone/staged.png") and not storage.exists("inputs/gone/i.png")


def test_retention_counts_a_job_its_owner_deleted_meanwhile_once(client, app, settings, db_session, monkeypatch):
    """The owner's DELETE and a retention pass on the same job each delete its objects (idempotent); only the one
    that marks it counts it (the sweep's report said it expired a job it had not)."""
    job = _stored_job(app, db_session, "raced", finished_at=utcnow() - timedelta(days=8))
    ctx = WorkerContext.create(settings)
    real_delete = ctx.storage.delete

    def deleted_by_owner_meanwhile(key):
        real_delete(key)
        if key == job.output_key:
            assert client.delete(f"/v1/jobs/{job.id}").status_code == 200

    try:
        monkeypatch.setattr(ctx.storage, "delete", deleted_by_owner_meanwhile)
        assert expire_old_jobs(ctx) == 0
    finally:
        ctx.engine.dispose()
    assert client.get(f"/v1/jobs/{job.id}").get_json()["expired_at"] is not None


def _stored_job(app, db_session, name: str, **fields) -> Job:
    storage = app.extensions["upscaler"].storage
    keys = {"input_key": f"inputs/{name}/i.png", "output_key": f"results/{name}/r.png"}
    for key in keys.values():
        storage.put_bytes(key, image_bytes(), "image/png")
    return make_job(db_session, **{"status": "succeeded", "finished_at": utcnow(), **keys, **fields})


def test_delete_removes_a_finished_jobs_images_now_and_keeps_its_record(client, app, db_session):
    """A studio's client photos need not wait out the deployment's retention: DELETE does what retention does."""
    storage = app.extensions["upscaler"].storage
    job = _stored_job(app, db_session, "mine")
    kept = _stored_job(app, db_session, "other")
    assert client.get(f"/v1/jobs/{job.id}/result").status_code == 200
    response = client.delete(f"/v1/jobs/{job.id}")
    body = response.get_json()
    assert response.status_code == 200 and body["status"] == "succeeded" and body["expired_at"] is not None
    assert body["result_url"] is None and body["links"]["result"] is None
    assert not storage.exists(job.input_key) and not storage.exists(job.output_key)
    assert storage.exists(kept.input_key) and storage.exists(kept.output_key)  # nothing of another job
    gone = client.get(f"/v1/jobs/{job.id}/result")
    assert (gone.status_code, gone.get_json()["code"]) == (410, "result_expired")
    assert "DELETE" in gone.get_json()["detail"]
    again = client.delete(f"/v1/jobs/{job.id}")  # a retried DELETE: the same answer
    assert (again.status_code, again.get_json()["expired_at"]) == (200, body["expired_at"])
    assert client.delete("/v1/jobs/" + "0" * 32).status_code == 404


def test_a_queued_job_is_deleted_only_once_canceled(client, app, db_session):
    storage = app.extensions["upscaler"].storage
    job_id = submit(client).get_json()["id"]
    input_key = db_session.get(Job, job_id).input_key
    refused = client.delete(f"/v1/jobs/{job_id}")
    body = refused.get_json()
    assert (refused.status_code, body["code"], body["job_status"]) == (409, "job_not_finished", "queued")
    assert storage.exists(input_key)  # a job that will still run keeps its input
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 200 and not storage.exists(input_key)


def test_a_delete_cut_short_by_storage_keeps_the_result_and_marks_nothing(client, app, db_session, monkeypatch):
    """The input goes first and the result last; a failure answers 503 with the job unmarked and its result still
    downloadable, and the DELETE sent again finishes it. A canceled attempt's staged upload goes too, and the row
    stops naming it (an upload landing later is then an orphan the orphan sweep removes)."""
    from shared.storage import StorageError

    storage = app.extensions["upscaler"].storage
    job = _stored_job(app, db_session, "flaky", staged_output_key="results/flaky/staged.png")
    storage.put_bytes("results/flaky/staged.png", image_bytes(), "image/png")
    real_delete = storage.delete

    def failing_on_results(key):
        if key == job.output_key:
            raise StorageError("storage is down")
        real_delete(key)

    monkeypatch.setattr(storage, "delete", failing_on_results)
    failed = client.delete(f"/v1/jobs/{job.id}")
    assert (failed.status_code, failed.get_json()["code"]) == (503, "service_unavailable")
    assert failed.headers["Retry-After"] == "10"
    db_session.expire_all()
    assert db_session.get(Job, job.id).expired_at is None
    assert not storage.exists(job.input_key) and client.get(f"/v1/jobs/{job.id}/result").status_code == 200
    monkeypatch.undo()
    assert client.delete(f"/v1/jobs/{job.id}").status_code == 200
    db_session.expire_all()
    row = db_session.get(Job, job.id)
    assert row.expired_at is not None and row.staged_output_key is None
    assert not storage.exists("results/flaky/staged.png") and not storage.exists(job.output_key)


def test_prefer_wait_never_takes_more_than_its_share_of_threads(settings):
    """Issue 10 #4: past the bounded number of waiters a submit answers 202 at once, so /healthz always answers."""
    import time

    from api import create_app

    app = create_app(settings.with_overrides(api_threads=2))
    svc = app.extensions["upscaler"]
    assert svc.waiters.acquire(blocking=False)  # the one waiting slot of this process is taken
    try:
        started = time.monotonic()
        response = app.test_client().post("/v1/jobs", content_type="multipart/form-data",
                                          headers={"Prefer": "wait=30"},
                                          data={"image": (io.BytesIO(image_bytes()), "a.png"), "model": "bicubic"})
        assert response.status_code == 202 and "Preference-Applied" not in response.headers
        assert time.monotonic() - started < 10
        assert app.test_client().get("/healthz").status_code == 200
    finally:
        svc.waiters.release()


def test_a_prefer_wait_is_not_timed_as_the_apis_latency(client, monkeypatch):
    """The time spent waiting for the job is the worker's: counted as latency it filled the histogram's top
    bucket with the jobs' lengths, and the API looked slow whenever clients waited."""
    import time

    from prometheus_client import REGISTRY

    from api import submission

    def seconds(name):
        return REGISTRY.get_sample_value(f"upscaler_http_request_duration_seconds_{name}",
                                         {"method": "POST", "route": "/v1/jobs"}) or 0.0

    waited = []

    def slow_job(svc, job_id, seconds, poll=0.25):
        time.sleep(1.5)
        waited.append(seconds)

    monkeypatch.setattr(submission, "wait_for_end", slow_job)
    total, count = seconds("sum"), seconds("count")
    response = client.post("/v1/jobs", data={"image": (io.BytesIO(image_bytes()), "a.png"), "model": "bicubic"},
                           headers={"Prefer": "wait=5"}, content_type="multipart/form-data")
    assert response.status_code == 202 and waited == [5]
    assert seconds("count") == count + 1 and seconds("sum") - total < 1.0


# a superscript 2 was a 500, as were thousands of digits (int() refuses past 4,300)
@pytest.mark.parametrize("prefer", ["wait=abc", "wait=1.5", "wait=-3", "wait=\u00b2", "wait=" + "9" * 5000])
def test_a_preference_that_cannot_be_honoured_is_ignored_not_refused(client, prefer):
    """RFC 7240: a server ignores a preference it cannot comply with (a malformed wait once refused the job, 422)."""
    response = client.post("/v1/jobs", data={"image": (io.BytesIO(image_bytes()), "a.png"), "model": "bicubic"},
                           headers={"Prefer": prefer}, content_type="multipart/form-data")
    assert response.status_code == 202 and "Preference-Applied" not in response.headers


def test_webhook_events_without_a_webhook_url_are_refused(client):
    """They were accepted and dropped without a word."""
    response = submit(client, webhook_events="job.succeeded")
    body = response.get_json()
    assert (response.status_code, body["code"], body["field"]) == (422, "invalid_parameter", "webhook_events")


def test_past_its_lookup_threads_a_submit_leaves_only_the_name_lookup_to_the_worker(settings, monkeypatch):
    """A submit's DNS lookup holds an API thread: when half the threads are already looking a host up (a
    customer's stalling name server), a further submit looks no name up (the worker's check, before it connects,
    refuses such an address then: tests/shared/test_webhooks.py), but checks all the rest as ever: an address
    literal, credentials, a metadata host were let through too."""
    import socket

    from api import create_app

    app = create_app(settings.with_overrides(webhook_allow_private=False))
    lookups = app.extensions["upscaler"].lookups
    assert submit(app.test_client(), webhook_url="http://127.0.0.1:9/hook").status_code == 422
    taken = 0
    while lookups.acquire(blocking=False):
        taken += 1

    def no_lookup(*args, **kwargs):
        raise AssertionError("a name was looked up with every lookup slot taken")

    monkeypatch.setattr(socket, "getaddrinfo", no_lookup)
    try:
        assert taken >= 1
        for refused in ("http://127.0.0.1:9/hook", "http://169.254.169.254/latest", "http://u:p@hooks.example.test/",
                        "http://metadata.google.internal/"):
            assert submit(app.test_client(), webhook_url=refused).status_code == 422, refused
        assert submit(app.test_client(), webhook_url="http://hooks.example.test/hook").status_code == 202
    finally:
        for _ in range(taken):
            lookups.release()


def test_a_stalled_redis_holds_a_submit_about_the_enqueue_timeout_not_the_workers_socket_floor(settings):
    """Redis that accepts connections and never answers (a partition, a stopped process): the API's publish waited
    on a 5 s socket floor per call and held the submit 7-17 s with UPSCALER_ENQUEUE_TIMEOUT=1."""
    import contextlib
    import socket
    import threading
    import time

    from kombu.exceptions import OperationalError

    from shared.queue import enqueue_job, make_celery

    silent = socket.create_server(("127.0.0.1", 0))
    held = []

    def hold() -> None:  # every connection accepted and never answered, until the listener closes
        with contextlib.suppress(OSError):
            while True:
                held.append(silent.accept())

    threading.Thread(target=hold, daemon=True).start()
    celery = make_celery(settings.with_overrides(redis_url=f"redis://127.0.0.1:{silent.getsockname()[1]}/0",
                                                 enqueue_timeout=1), publisher=True)
    assert celery.conf.broker_transport_options["socket_timeout"] == 1
    started = time.monotonic()
    try:
        with pytest.raises(OperationalError):
            enqueue_job(celery, "0" * 32)
        assert time.monotonic() - started < 7  # two tries of about 1 s each, not 15 s
    finally:
        silent.close()
