"""Tenant isolation, route by route, on SQLite and PostgreSQL: another tenant's job is a 404, never a 403."""

from __future__ import annotations

import io
import threading
import uuid

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from shared.models import ApiKey, Job
from shared.tenants import create_key, revoke_key
from tests.conftest import image_bytes
from tests.receiver import Receiver


@pytest.fixture
def tenants(app, db_session):
    """Two customers' keys (created as data, the way `upscaler keys create` does)."""
    _, key_a = create_key(db_session, "acme")
    _, key_b = create_key(db_session, "globex", rate_limit=100)
    db_session.commit()
    return {"a": {"Authorization": f"Bearer {key_a}"}, "b": {"Authorization": f"Bearer {key_b}"}}


def submit_as(client, headers, **fields):
    data = {"image": (io.BytesIO(image_bytes(width=32, height=24)), "a.png"), "scale": "2", "model": "bicubic",
            **fields}
    return client.post("/v1/jobs", data=data, content_type="multipart/form-data", headers=headers)


def test_a_second_tenant_sees_nothing_of_the_first_in_any_route(client, tenants, db_session):
    receiver = Receiver()
    try:
        created = submit_as(client, {**tenants["a"], "Idempotency-Key": "order-1"}, webhook_url=receiver.url)
    finally:
        receiver.close()
    assert created.status_code == 202, created.get_json()
    job_id = created.get_json()["id"]
    missing = client.get("/v1/jobs/" + "0" * 32, headers=tenants["b"]).get_json()
    routes = [("get", f"/v1/jobs/{job_id}"), ("get", f"/v1/jobs/{job_id}/result"),
              ("post", f"/v1/jobs/{job_id}/cancel"), ("get", f"/v1/jobs/{job_id}/deliveries"),
              ("post", f"/v1/jobs/{job_id}/deliveries/redeliver"), ("delete", f"/v1/jobs/{job_id}")]
    for method, path in routes:
        response = getattr(client, method)(path, headers=tenants["b"])
        body = response.get_json()
        assert (response.status_code, body["code"]) == (404, "not_found"), path
        assert body["title"] == missing["title"] and job_id not in str(response.headers), path
    listed = client.get("/v1/jobs", headers=tenants["b"]).get_json()
    assert listed["data"] == [] and listed["next_cursor"] is None
    assert db_session.get(Job, job_id).status == "queued"  # B's cancel did nothing
    # The same Idempotency-Key from B makes B's own job, never returns A's (or its webhook URL).
    reused = submit_as(client, {**tenants["b"], "Idempotency-Key": "order-1"})
    assert reused.status_code == 202 and reused.get_json()["id"] != job_id
    assert reused.get_json()["webhook_url"] is None
    # A still sees its job everywhere.
    assert client.get(f"/v1/jobs/{job_id}", headers=tenants["a"]).get_json()["webhook_url"] == receiver.url
    assert [j["id"] for j in client.get("/v1/jobs", headers=tenants["a"]).get_json()["data"]] == [job_id]
    assert client.get(f"/v1/jobs/{job_id}/deliveries", headers=tenants["a"]).status_code == 200
    again = submit_as(client, {**tenants["a"], "Idempotency-Key": "order-1"}, webhook_url=receiver.url)
    assert (again.status_code, again.get_json()["id"]) == (202, job_id)  # still queued: answered as at first
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=tenants["a"]).get_json()["status"] == "canceled"


def test_once_a_key_exists_calls_need_one_and_a_revoked_key_stops_at_once(client, tenants, db_session):
    assert client.get("/v1/jobs").status_code == 401  # no longer open
    assert client.get("/v1/jobs", headers={"Authorization": "Bearer upk_not-a-key"}).status_code == 401
    assert client.get("/v1/jobs", headers=tenants["a"]).status_code == 200
    assert revoke_key(db_session, "acme")
    db_session.commit()
    assert client.get("/v1/jobs", headers=tenants["a"]).status_code == 401
    assert client.get("/v1/jobs", headers=tenants["b"]).status_code == 200


def test_revoking_every_key_does_not_open_the_api_again(client, tenants, db_session):
    """Open development mode is for a deployment that never had a key: revoking the last one once let key-less
    calls in again, as the 'public' tenant."""
    assert revoke_key(db_session, "acme") and revoke_key(db_session, "globex")
    db_session.commit()
    assert client.get("/v1/jobs").status_code == 401


def test_a_revoked_tenant_gets_a_new_key_and_keeps_its_jobs_and_a_key_can_be_rotated(client, tenants, db_session):
    from shared.tenants import rotate_key

    job_id = submit_as(client, tenants["a"]).get_json()["id"]
    assert revoke_key(db_session, "acme")
    db_session.commit()
    db_session.query(ApiKey).filter_by(name="acme").update({"rate_limit": 5})  # the old key's own limit
    db_session.commit()
    row, fresh = create_key(db_session, "acme")  # once refused: KeyExists on the revoked row
    db_session.commit()
    assert row.rate_limit is None  # the limits asked for now (none: the setting), not the old key's silently
    renewed = {"Authorization": f"Bearer {fresh}"}
    assert client.get(f"/v1/jobs/{job_id}", headers=renewed).status_code == 200  # still acme's job
    assert client.get("/v1/jobs", headers=tenants["a"]).status_code == 401  # the revoked secret stays dead
    _row, rotated = rotate_key(db_session, "acme")
    db_session.commit()
    assert client.get("/v1/jobs", headers=renewed).status_code == 401  # the old secret stops at once
    assert client.get(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {rotated}"}).status_code == 200


@pytest.mark.parametrize("name", ["public", "env-0123456789ab", "x" * 65, "", "acme/v1"])
def test_names_that_would_take_over_other_jobs_are_refused(db_session, name):
    """'public' owns every job of the open development API and env-... the bootstrap keys' jobs; 'acme/v1' would
    sign with acme's webhook secret once acme rotated it."""
    from shared.tenants import InvalidKeyName

    with pytest.raises(InvalidKeyName):
        create_key(db_session, name)


def test_production_never_runs_open(settings):
    from api import create_app

    app = create_app(settings.with_overrides(env="production", public_url="https://upscaler.example"))
    response = app.test_client().get("/v1/jobs")
    assert (response.status_code, response.get_json()["code"]) == (401, "unauthorized")


def test_each_tenant_reads_its_own_webhook_secret(app, client, tenants):
    """One secret for the whole deployment let any customer sign messages another customer's receiver accepts."""
    from shared.webhooks import signing_secret

    settings = app.extensions["upscaler"].settings
    answers = {name: client.get("/v1/webhooks/secret", headers=headers) for name, headers in tenants.items()}
    assert {name: (r.status_code, r.headers["Cache-Control"]) for name, r in answers.items()} == \
        {"a": (200, "no-store"), "b": (200, "no-store")}
    assert answers["a"].get_json() == {"tenant": "acme", "secret": signing_secret(settings, "acme"),
                                       "previous_secret_valid_until": None}
    assert answers["b"].get_json() == {"tenant": "globex", "secret": signing_secret(settings, "globex"),
                                       "previous_secret_valid_until": None}
    assert answers["a"].get_json()["secret"] != answers["b"].get_json()["secret"]
    assert client.get("/v1/webhooks/secret").status_code == 401  # keys exist: no key, no secret


def test_a_tenant_rotates_its_own_webhook_secret_and_the_previous_one_signs_for_a_day(app, client, tenants):
    """The secret was its name's HMAC alone: rotating or revoking a leaked key left whoever read it able to sign
    messages the customer's receiver accepts for good. Now it has a version; the previous one goes on signing
    (both signatures in each message) for the grace, so receivers switch without a gap, and others' stay."""
    from datetime import UTC, datetime, timedelta

    from shared.webhooks import signed_headers, tenant_secrets

    before = {name: client.get("/v1/webhooks/secret", headers=h).get_json()["secret"] for name, h in tenants.items()}
    rotated = client.post("/v1/webhooks/secret/rotate", headers=tenants["a"])
    body = rotated.get_json()
    assert rotated.status_code == 201 and body["secret"] not in before.values()
    until = datetime.fromisoformat(body["previous_secret_valid_until"].replace("Z", "+00:00"))
    assert timedelta(hours=23, minutes=59) < until - datetime.now(UTC) <= timedelta(hours=24)
    assert client.get("/v1/webhooks/secret", headers=tenants["a"]).get_json() == body
    assert client.get("/v1/webhooks/secret", headers=tenants["b"]).get_json()["secret"] == before["b"]
    svc = app.extensions["upscaler"]
    with svc.sessions() as session:
        secrets = tenant_secrets(session, svc.settings, "acme")
    assert secrets.signing == [body["secret"], before["a"]]
    headers = signed_headers(secrets.signing, "msg_1", "{}")
    for secret in (body["secret"], before["a"]):  # a receiver holding either verifies the message
        assert Webhook(secret).verify("{}", headers) == {}
    with pytest.raises(WebhookVerificationError):
        Webhook(before["b"]).verify("{}", headers)
    again = client.post("/v1/webhooks/secret/rotate", headers=tenants["a"]).get_json()
    with svc.sessions() as session:  # a second rotation: the first secret stops signing at once
        assert tenant_secrets(session, svc.settings, "acme").signing == [again["secret"], body["secret"]]


def test_development_without_keys_is_open_as_the_public_tenant(client):
    response = submit_as(client, {})
    assert response.status_code == 202
    assert [j["id"] for j in client.get("/v1/jobs").get_json()["data"]] == [response.get_json()["id"]]


def test_keys_are_stored_hashed_and_last_use_is_recorded(client, tenants, db_session):
    from shared.models import ApiKey

    row = db_session.query(ApiKey).filter_by(name="acme").one()
    secret = tenants["a"]["Authorization"].split()[1]
    assert secret not in (row.key_hash, row.prefix) and secret.startswith(row.prefix)
    client.get("/v1/jobs", headers=tenants["a"])
    db_session.expire_all()
    assert db_session.get(ApiKey, row.id).last_used_at is not None


def test_rate_limit_answers_429_with_retry_after_and_ratelimit_headers(app, client, db_session):
    _, key = create_key(db_session, f"chatty-{uuid.uuid4().hex[:8]}", rate_limit=3)  # Redis outlives a test
    db_session.commit()
    headers = {"Authorization": f"Bearer {key}"}
    answers = [client.get("/v1/jobs", headers=headers) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0].headers["RateLimit-Policy"] == '"per-minute";q=3;w=60'
    assert answers[2].headers["RateLimit"].startswith('"per-minute";r=0;')
    limited = answers[3]
    assert limited.get_json()["code"] == "rate_limited" and 0 < int(limited.headers["Retry-After"]) <= 60


def test_active_jobs_and_daily_megapixels_are_capped_per_tenant(client, db_session):
    _, busy = create_key(db_session, "busy", max_active=2)
    _, small = create_key(db_session, f"small-{uuid.uuid4().hex[:8]}", daily_megapixels=2)
    db_session.commit()
    busy_h, small_h = {"Authorization": f"Bearer {busy}"}, {"Authorization": f"Bearer {small}"}
    assert [submit_as(client, busy_h).status_code for _ in range(3)] == [202, 202, 429]
    refused = submit_as(client, busy_h).get_json()
    assert (refused["code"], refused["limit"]) == ("too_many_active_jobs", 2)
    # 32x24 at x2 is 0.003 MP; a 600x500 at x2 is 1.2 MP: the second one passes a 2 MP day.
    def submit_big(width: int, height: int):
        return client.post("/v1/jobs", headers=small_h, content_type="multipart/form-data",
                           data={"image": (io.BytesIO(image_bytes(width=width, height=height)), "b.png"),
                                 "scale": "2", "model": "bicubic"})

    assert submit_as(client, small_h).status_code == 202
    assert submit_big(600, 500).status_code == 202
    big = submit_big(600, 500)
    assert (big.status_code, big.get_json()["code"]) == (429, "quota_exceeded")
    assert int(big.headers["Retry-After"]) <= 86401
    # larger than the whole day: no midnight would let it through, so no Retry-After that says so
    never = submit_big(900, 800)
    assert (never.status_code, never.get_json()["code"], never.get_json()["limit"]) == (422, "output_too_large", 2)
    assert "Retry-After" not in never.headers
    assert submit_as(client, small_h).status_code == 202  # the refused jobs reserved nothing


def test_a_submit_past_its_active_jobs_is_refused_before_it_is_charged_or_stored(client, db_session, monkeypatch):
    """It was charged first and refused after its upload was stored: its megapixels held the quota meanwhile (a
    submit then was refused quota_exceeded until midnight), and its whole input went to storage for nothing."""
    import redis as redis_client

    from api import quotas

    name = f"full-{uuid.uuid4().hex[:8]}"
    _, key = create_key(db_session, name, max_active=1, daily_megapixels=3)
    db_session.commit()
    auth = {"Authorization": f"Bearer {key}"}
    assert submit_as(client, auth).status_code == 202  # the one active job (0.003 MP)
    storage = client.application.extensions["upscaler"].storage
    stored, charged = [], []
    monkeypatch.setattr(storage, "put_bytes", lambda *args, **kwargs: stored.append(args[0]))
    counts = redis_client.Redis.from_url(client.application.extensions["upscaler"].settings.redis_url)
    (day,) = counts.keys(f"upscaler:mp:{name}:*")
    before = float(counts.get(day))
    real_reserve = quotas.reserve_megapixels
    monkeypatch.setattr(quotas, "reserve_megapixels", lambda *a: charged.append(a[-1]) or real_reserve(*a))
    refused = client.post("/v1/jobs", headers=auth, content_type="multipart/form-data",
                          data={"image": (io.BytesIO(image_bytes(width=600, height=500)), "b.png"), "scale": "2",
                                "model": "bicubic"})  # 1.2 MP
    assert (refused.status_code, refused.get_json()["code"]) == (429, "too_many_active_jobs")
    assert stored == [] and charged == [] and float(counts.get(day)) == before


def test_a_job_by_image_url_is_refused_once_the_days_quota_is_used_up(client, db_session):
    """Charged only once fetched, such jobs were taken at 0 left: each cost a worker's turn and a download to fail
    quota_exceeded. Before the day is used up they are taken (their size is not known yet)."""
    name = f"urls-{uuid.uuid4().hex[:8]}"
    _, key = create_key(db_session, name, daily_megapixels=2)
    db_session.commit()
    auth = {"Authorization": f"Bearer {key}"}

    def by_url():
        return client.post("/v1/jobs", headers=auth, content_type="multipart/form-data",
                           data={"image_url": "http://127.0.0.1:9/a.png", "scale": "2", "model": "bicubic"})

    assert by_url().status_code == 202
    assert client.post("/v1/jobs", headers=auth, content_type="multipart/form-data",
                       data={"image": (io.BytesIO(image_bytes(width=1000, height=500)), "b.png"), "scale": "2",
                             "model": "bicubic"}).status_code == 202  # 2 MP: the whole day
    refused = by_url()
    assert (refused.status_code, refused.get_json()["code"]) == (429, "quota_exceeded")
    assert "used up" in refused.get_json()["detail"] and int(refused.headers["Retry-After"]) <= 86401


def test_concurrent_submits_cannot_pass_the_active_job_limit_together(app, db_session, settings):
    """Each submit counted the tenant's active jobs and inserted later in another transaction: 8 at once were
    all accepted under a limit of 2 on SQLite, 6 on PostgreSQL. Counting now happens after the insert, in its
    transaction, one submit per tenant at a time."""
    from concurrent.futures import ThreadPoolExecutor

    name = f"burst-{uuid.uuid4().hex[:8]}"
    _, key = create_key(db_session, name, max_active=2)
    db_session.commit()
    gate = threading.Barrier(8)

    def submit(_):
        client = app.test_client()
        gate.wait()
        return submit_as(client, {"Authorization": f"Bearer {key}"})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(submit, range(8)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [202, 202] + [429] * 6, [a.get_json() for a in answers]
    assert {a.get_json()["code"] for a in answers if a.status_code == 429} == {"too_many_active_jobs"}
    db_session.expire_all()
    assert db_session.query(Job).filter_by(tenant=name).count() == 2
    # the refused submits' uploads were removed: only the two jobs' inputs are stored
    assert len([p for p in (settings.storage_dir / "inputs").rglob("*") if p.is_file()]) == 2


def test_a_request_that_loses_an_idempotency_race_is_not_charged_twice(client, db_session, monkeypatch):
    """Two requests with one Idempotency-Key at once: both miss the lookup, the second's insert loses to the
    first's, and it answers the first's job. Simulated by hiding the first job from the second's lookup (the
    insert and its conflict are the real database's). Quota: 1 MP a day; the raced job costs 0.3 MP."""
    from api import submission

    _, key = create_key(db_session, f"racer-{uuid.uuid4().hex[:8]}", daily_megapixels=1)
    db_session.commit()
    auth = {"Authorization": f"Bearer {key}"}
    raced = {**auth, "Idempotency-Key": f"race-{uuid.uuid4().hex}"}

    def post(headers, width, height):
        return client.post("/v1/jobs", headers=headers, content_type="multipart/form-data",
                           data={"image": (io.BytesIO(image_bytes(width=width, height=height)), "b.png"),
                                 "scale": "2", "model": "bicubic"})

    first = post(raced, 500, 150)  # 1000 x 300 out: 0.3 MP
    assert first.status_code == 202
    real, lookups = submission.find_previous, []

    def missed_once(*args):  # the route's lookup misses; the one after the conflicting insert finds it
        lookups.append(args)
        return None if len(lookups) == 1 else real(*args)

    monkeypatch.setattr(submission, "find_previous", missed_once)
    second = post(raced, 500, 150)
    monkeypatch.undo()
    assert second.status_code == 202 and second.get_json()["id"] == first.get_json()["id"]  # one job, not two
    assert len(lookups) == 2
    assert post(auth, 500, 300).status_code == 202  # 0.6 MP more fits: 0.3 used, not 0.6


def test_a_queued_job_canceled_before_it_ran_gives_its_charge_back(client, db_session):
    """An upload is charged at submit; a customer who cancelled a wrong size at once lost that quota for the day."""
    import redis as redis_client

    name = f"undo-{uuid.uuid4().hex[:8]}"
    _, key = create_key(db_session, name, daily_megapixels=2)
    db_session.commit()
    auth = {"Authorization": f"Bearer {key}"}
    submitted = client.post("/v1/jobs", headers=auth, content_type="multipart/form-data",
                            data={"image": (io.BytesIO(image_bytes(width=600, height=500)), "b.png"), "scale": "2",
                                  "model": "bicubic"}).get_json()  # 1.2 MP
    counts = redis_client.Redis.from_url(client.application.extensions["upscaler"].settings.redis_url)
    (day,) = counts.keys(f"upscaler:mp:{name}:*")
    assert float(counts.get(day)) == pytest.approx(1.2)
    assert client.post(f"/v1/jobs/{submitted['id']}/cancel", headers=auth).status_code == 200
    assert float(counts.get(day)) == pytest.approx(0.0)
    assert client.post(f"/v1/jobs/{submitted['id']}/cancel", headers=auth).status_code == 200  # again: no refund
    assert float(counts.get(day)) == pytest.approx(0.0)


@pytest.mark.parametrize("landed,known", [(True, True), (False, True), (True, False)])
def test_a_submit_whose_commit_answer_was_lost_neither_deletes_nor_refunds_a_job_that_exists(
        client, db_session, monkeypatch, landed, known):
    """The commit reached the database and its answer was lost (a failover): the submit answered 503 "nothing was
    stored", deleted the input and refunded the charge under a job that existed, which then failed input_missing
    (a webhook for a job the client was told did not exist) and was refunded again: free quota."""
    import contextlib

    import redis as redis_client
    from sqlalchemy.exc import OperationalError

    from api import submission

    name = f"lost-{uuid.uuid4().hex[:8]}"
    _, key = create_key(db_session, name, daily_megapixels=10)
    db_session.commit()
    real = submission.unit_of_work

    @contextlib.contextmanager
    def commit_then_lose_the_answer(factory):
        with real(factory) as session:
            yield session
            if not landed:
                raise OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))
        raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(submission, "unit_of_work", commit_then_lose_the_answer)
    if not known:  # and the database cannot say, asked again
        monkeypatch.setattr(submission, "_stored", lambda svc, job_id: None)
    response = client.post("/v1/jobs", headers={"Authorization": f"Bearer {key}"}, content_type="multipart/form-data",
                           data={"image": (io.BytesIO(image_bytes(width=1000, height=500)), "b.png"), "scale": "2",
                                 "model": "bicubic"})  # 2 MP
    monkeypatch.setattr(submission, "unit_of_work", real)
    db_session.expire_all()
    stored = db_session.query(Job).filter_by(tenant=name).all()
    counts = redis_client.Redis.from_url(client.application.extensions["upscaler"].settings.redis_url)
    (day,) = counts.keys(f"upscaler:mp:{name}:*")
    storage = client.application.extensions["upscaler"].storage
    if landed and known:  # asked again, the job is there: it is the answer
        assert response.status_code == 202 and [job.id for job in stored] == [response.get_json()["id"]]
    elif landed:  # nobody can say: neither deleted nor refunded, and the client is told it may exist
        assert (response.status_code, response.get_json()["code"]) == (503, "service_unavailable")
        assert "may exist" in response.get_json()["detail"] and len(stored) == 1
    else:
        assert (response.status_code, stored) == (503, [])
        assert "nothing was stored" in response.get_json()["detail"]
    assert float(counts.get(day)) == pytest.approx(2.0 if landed else 0.0)
    assert all(storage.exists(job.input_key) for job in stored)


def test_the_open_apis_tenant_has_no_webhook_secret_of_its_own_to_rotate(client):
    response = client.post("/v1/webhooks/secret/rotate")
    assert (response.status_code, response.get_json()["code"]) == (409, "secret_not_rotatable")


def test_a_key_revoked_during_a_wait_or_a_slow_upload_gets_no_result_and_stores_nothing(app, client, tenants,
                                                                                       db_session, monkeypatch):
    """The key was checked only as the request began: a ``Prefer: wait`` in progress when the key was revoked
    answered 200 with a result link minted after the revocation, and an upload still arriving was stored."""
    from api import submission
    from shared.db import unit_of_work
    from shared.models import utcnow

    sessions = app.extensions["upscaler"].sessions

    def revoked_while_waiting(svc, job_id, seconds, poll=0.25):
        with unit_of_work(sessions) as session:
            revoke_key(session, "acme")
            job = session.get(Job, job_id)
            job.status, job.finished_at, job.output_key = "succeeded", utcnow(), "results/abc/x.png"
        with sessions() as session:
            return session.get(Job, job_id)

    monkeypatch.setattr(submission, "wait_for_end", revoked_while_waiting)
    waited = submit_as(client, {**tenants["a"], "Prefer": "wait=5"})
    assert (waited.status_code, waited.get_json()["code"]) == (401, "unauthorized")
    assert "result_url" not in waited.get_json()

    real_parse = submission.parse
    revoking = []

    def revoked_while_uploading(svc):
        parsed = real_parse(svc)
        with unit_of_work(sessions) as session:
            revoke_key(session, revoking[-1])
        return parsed

    _, initech = create_key(db_session, "initech")
    db_session.commit()
    ordered = {"Authorization": f"Bearer {initech}", "Idempotency-Key": "order-1"}
    first = submit_as(client, ordered)
    assert first.status_code == 202
    db_session.query(Job).filter_by(id=first.get_json()["id"]).update(
        {"status": "succeeded", "finished_at": utcnow(), "output_key": "results/abc/y.png"})
    db_session.commit()
    monkeypatch.setattr(submission, "parse", revoked_while_uploading)
    revoking.append("initech")  # a replay of a request whose job has ended got a fresh result link
    replayed = submit_as(client, ordered)
    assert (replayed.status_code, replayed.get_json()["code"]) == (401, "unauthorized")
    assert "result_url" not in replayed.get_json()

    revoking.append("globex")
    before = db_session.query(Job).count()
    uploaded = submit_as(client, tenants["b"])
    assert (uploaded.status_code, uploaded.get_json()["code"]) == (401, "unauthorized")
    db_session.expire_all()
    assert db_session.query(Job).count() == before


def test_a_retry_sent_while_its_first_request_is_still_storing_gets_that_job_not_a_quota_refusal(
        app, db_session, monkeypatch):
    """The quota was charged before the Idempotency-Key was recorded: a retry arriving while the first request was
    still storing its input (a slow store, a client timing out) was refused ``quota_exceeded`` until midnight."""
    import time

    storage = app.extensions["upscaler"].storage
    tenant = f"one-mp-{uuid.uuid4().hex[:8]}"  # its own count in the shared Redis
    _, key = create_key(db_session, tenant, daily_megapixels=1)
    db_session.commit()
    real_put = storage.put_bytes

    def slow_for_the_first(*args, **kwargs):
        if threading.current_thread().name == "first":
            time.sleep(1.0)
        return real_put(*args, **kwargs)

    monkeypatch.setattr(storage, "put_bytes", slow_for_the_first)
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "photo-123"}

    def send():  # 640x300 at x2: 0.77 of the 1 MP a day
        data = {"image": (io.BytesIO(image_bytes(width=640, height=300)), "p.png"), "scale": "2", "model": "bicubic"}
        return app.test_client().post("/v1/jobs", data=data, content_type="multipart/form-data", headers=headers)

    answers = {}
    first = threading.Thread(target=lambda: answers.update(first=send()), name="first")
    first.start()
    time.sleep(0.4)
    answers["retry"] = send()
    first.join()
    assert answers["first"].status_code == 202, answers["first"].get_json()
    assert answers["retry"].status_code == 202, answers["retry"].get_json()
    assert answers["retry"].get_json()["id"] == answers["first"].get_json()["id"]
    assert db_session.query(Job).filter_by(tenant=tenant).count() == 1


def test_a_key_revoked_while_its_input_is_stored_makes_no_job(app, client, tenants, db_session, monkeypatch):
    """The key was asked once, after the upload arrived, then the input went to storage (seconds, for a large
    file) before the job was inserted: a revocation in between (``keys revoke --cancel-jobs``, which lists the
    tenant's jobs to cancel right after) let a job in that ran to the end. The key is asked again under the
    tenant's lock, in the transaction that inserts the job."""
    from shared.db import unit_of_work

    services = app.extensions["upscaler"]
    real_put = services.storage.put_bytes

    def revoked_while_storing(*args, **kwargs):
        with unit_of_work(services.sessions) as session:
            revoke_key(session, "acme")
        return real_put(*args, **kwargs)

    monkeypatch.setattr(services.storage, "put_bytes", revoked_while_storing)
    before = db_session.query(Job).filter_by(tenant="acme").count()
    response = submit_as(client, tenants["a"])
    assert (response.status_code, response.get_json()["code"]) == (401, "unauthorized")
    db_session.expire_all()
    assert db_session.query(Job).filter_by(tenant="acme").count() == before


def test_a_keys_limits_change_with_its_secret_kept_and_only_its_own(client, tenants, db_session):
    """A customer's new plan: its limits change from its next request, with the key it has (they took revoke +
    create, a new key for every client of it), and no other tenant's."""
    from shared.tenants import UNCHANGED, set_limits

    assert client.get("/v1/models", headers=tenants["b"]).headers["RateLimit-Policy"] == '"per-minute";q=100;w=60'
    assert set_limits(db_session, "globex", rate_limit=250, daily_megapixels=7).rate_limit == 250
    db_session.commit()
    answer = client.get("/v1/models", headers=tenants["b"])  # the same key
    assert answer.status_code == 200 and answer.headers["RateLimit-Policy"] == '"per-minute";q=250;w=60'
    assert set_limits(db_session, "globex", rate_limit=None, max_active=UNCHANGED).rate_limit is None  # the setting's
    db_session.commit()
    row = db_session.query(ApiKey).filter_by(name="globex").one()
    assert (row.rate_limit, row.daily_megapixels) == (None, 7)
    assert db_session.query(ApiKey).filter_by(name="acme").one().rate_limit is None  # untouched
    assert revoke_key(db_session, "acme")
    assert set_limits(db_session, "acme", rate_limit=1) is None  # no active key: nothing to change
    assert set_limits(db_session, "nobody", rate_limit=1) is None


@pytest.mark.parametrize("name", ["acme ", " acme"])
def test_a_name_with_a_space_at_either_end_is_refused(db_session, name):
    """'acme ' was a tenant of its own that 'keys list' showed as 'acme', beside acme, and 'keys revoke acme' left
    it alone."""
    from shared.tenants import InvalidKeyName

    with pytest.raises(InvalidKeyName):
        create_key(db_session, name)
