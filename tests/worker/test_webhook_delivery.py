"""Webhook messages from job events, delivered to a real HTTP receiver and verified with standardwebhooks."""

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from shared import deliveries
from shared.models import WebhookAttempt, WebhookDelivery
from shared.webhooks import signing_secret
from tests.dns import no_connections, one_internal_name
from tests.factories import queued_job
from tests.receiver import trickle_head
from worker import pipeline
from worker.webhook_delivery import deliver


def messages(db_session, job_id):
    db_session.expire_all()
    return db_session.query(WebhookDelivery).filter_by(job_id=job_id).order_by(WebhookDelivery.created_at).all()


def deliver_all(ctx, db_session, job_id):
    for message in messages(db_session, job_id):
        deliver(ctx, ctx.celery, message.id)


def test_events_are_signed_and_carry_the_job_json(ctx, db_session, receiver):
    job = queued_job(ctx, db_session, webhook_url=receiver.url, webhook_events=["job.started", "job.succeeded"])
    assert pipeline.run_job(ctx, job.id) == "succeeded"
    deliver_all(ctx, db_session, job.id)
    assert [m.status for m in messages(db_session, job.id)] == ["delivered", "delivered"]
    secret = signing_secret(ctx.settings, job.tenant)
    bodies = [Webhook(secret).verify(r["body"], r["headers"]) for r in receiver.requests]
    assert [b["type"] for b in bodies] == ["job.started", "job.succeeded"]
    assert bodies[0]["data"]["status"] == "running"
    final = bodies[1]["data"]
    assert (final["id"], final["status"], final["progress"]) == (job.id, "succeeded", 1.0)
    assert final["output"]["width"] == 80 and final["result_url"]
    assert {r["headers"]["webhook-id"] for r in receiver.requests} == {m.id for m in messages(db_session, job.id)}
    # the payload is resent as is by every retry: its link outlives the last one (about 7.5 h + 20 % + 1 h)
    expires = datetime.fromisoformat(final["result_url_expires_at"].replace("Z", "+00:00"))
    lives = (expires - datetime.now(UTC)).total_seconds()
    retries = sum(ctx.settings.webhook_retry_delays) * 1.2
    assert retries + ctx.settings.result_url_ttl - 60 < lives <= retries + ctx.settings.result_url_ttl


def test_a_tenants_messages_verify_with_its_own_secret_only(ctx, db_session, receiver):
    """Signed with the job's tenant's secret: another tenant's secret (or the deployment's) does not verify it,
    so a customer cannot forge messages for another customer's receiver."""
    job = queued_job(ctx, db_session, webhook_url=receiver.url, tenant="acme")
    assert pipeline.run_job(ctx, job.id) == "succeeded"
    deliver_all(ctx, db_session, job.id)
    [request] = receiver.requests
    assert Webhook(signing_secret(ctx.settings, "acme")).verify(request["body"], request["headers"])["data"]["id"] \
        == job.id
    for other in ("globex", "public"):
        with pytest.raises(WebhookVerificationError):
            Webhook(signing_secret(ctx.settings, other)).verify(request["body"], request["headers"])


def test_default_events_are_the_terminal_ones(ctx, db_session, receiver):
    job = queued_job(ctx, db_session, webhook_url=receiver.url, data=b"not an image")
    pipeline.run_job(ctx, job.id)
    assert [m.event for m in messages(db_session, job.id)] == ["job.failed"]
    deliver_all(ctx, db_session, job.id)
    assert json.loads(receiver.requests[0]["body"])["data"]["error"]["code"] == "input_unreadable"


def test_failures_are_retried_with_backoff_then_delivered(ctx, db_session, receiver):
    receiver.codes = [500, 503]
    job = queued_job(ctx, db_session, webhook_url=receiver.url)
    pipeline.run_job(ctx, job.id)
    [message] = messages(db_session, job.id)
    outcomes = []
    for _ in range(3):
        db_session.expire_all()
        due_at = db_session.get(WebhookDelivery, message.id).next_attempt_at
        time.sleep(max(0.0, (due_at - deliveries.utcnow()).total_seconds()) + 0.01)
        outcomes.append(deliver(ctx, ctx.celery, message.id))
    assert outcomes == ["retrying", "retrying", "delivered"]
    attempts = db_session.query(WebhookAttempt).filter_by(delivery_id=message.id).all()
    assert [a.status_code for a in attempts] == [500, 503, 204]
    assert all(a.latency_ms is not None for a in attempts)
    assert len({r["headers"]["webhook-id"] for r in receiver.requests}) == 1  # same message each time


def test_not_due_yet_is_skipped(ctx, db_session, receiver):
    receiver.codes = [500]
    job = queued_job(ctx, db_session, webhook_url=receiver.url)
    pipeline.run_job(ctx, job.id)
    [message] = messages(db_session, job.id)
    assert deliver(ctx, ctx.celery, message.id) == "retrying"
    assert deliver(ctx, ctx.celery, message.id) == "skipped"  # its retry time has not come


@pytest.mark.parametrize("codes,expected", [([410], 1), ([302], 4)])
def test_gone_stops_retries_and_redirects_are_not_followed(ctx, db_session, receiver, codes, expected,
                                                          loopback_connections_only):
    receiver.codes = codes * 4
    ctx.settings = ctx.settings.with_overrides(webhook_retry_schedule="0,0,0")
    job = queued_job(ctx, db_session, webhook_url=receiver.url)
    pipeline.run_job(ctx, job.id)
    [message] = messages(db_session, job.id)
    for _ in range(5):
        deliver(ctx, ctx.celery, message.id)
    assert messages(db_session, job.id)[0].status == "failed"
    assert len(receiver.requests) == expected  # 410: once; 3xx: every attempt fails
    assert loopback_connections_only == []  # the redirect to the metadata address was never followed


def test_destination_is_checked_again_at_delivery(ctx, db_session, receiver):
    job = queued_job(ctx, db_session, webhook_url=receiver.url)
    pipeline.run_job(ctx, job.id)
    ctx.settings = ctx.settings.with_overrides(webhook_allow_private=False)
    [message] = messages(db_session, job.id)
    assert deliver(ctx, ctx.celery, message.id) == "failed"
    attempt = db_session.query(WebhookAttempt).filter_by(delivery_id=message.id).one()
    assert attempt.error.startswith("refused:") and receiver.requests == []


def test_sweeper_republishes_a_late_message_once_and_never_one_that_still_waits(ctx, db_session, receiver):
    """A message lost on its way is published again once a grace period; one that waits in the webhooks queue (no
    webhook worker running) is not: every sweep added one more copy of each pending message."""
    from datetime import timedelta

    import redis

    from shared.models import utcnow
    from shared.queue import WEBHOOK_QUEUE, queue_depth, queue_lists
    from worker.sweeper import sweep

    job = queued_job(ctx, db_session, webhook_url=receiver.url)
    broker = redis.Redis.from_url(ctx.settings.redis_url)
    broker.delete(*queue_lists(WEBHOOK_QUEUE))
    pipeline.run_job(ctx, job.id)
    [message] = messages(db_session, job.id)

    def late() -> None:
        long_ago = utcnow() - timedelta(seconds=60)
        db_session.query(WebhookDelivery).filter_by(id=message.id).update(
            {"next_attempt_at": long_ago, "updated_at": long_ago})
        db_session.commit()

    assert queue_depth(broker, WEBHOOK_QUEUE) == 1
    for _ in range(3):  # its message waits: never doubled, however many sweeps go by
        late()
        assert sweep(ctx, ctx.celery).webhooks == 0
    assert queue_depth(broker, WEBHOOK_QUEUE) == 1
    broker.delete(*queue_lists(WEBHOOK_QUEUE))  # lost (Redis restarted without its data)
    late()
    assert sweep(ctx, ctx.celery).webhooks == 1
    assert sweep(ctx, ctx.celery).webhooks == 0  # not again until the grace period passes
    assert queue_depth(broker, WEBHOOK_QUEUE) == 1
    assert deliver(ctx, ctx.celery, message.id) == "delivered"


class _Trickler:
    """A loopback receiver that starts a 200 answer and then sends its headers a byte at a time, for ever."""

    def __init__(self):
        import socket
        import threading

        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/hook"
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        import threading

        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=trickle_head, args=(connection, 0.5), daemon=True).start()

    def close(self):
        self.server.close()


def test_a_receiver_trickling_its_answer_is_cut_off_at_the_timeout_and_retried(ctx, db_session):
    """A socket timeout bounds each read, not the attempt: a receiver sending a byte every half second held a
    webhook worker as long as it liked (its lease ran out and a second attempt of the same message started), and a
    large answer was read whole into memory (now its body is not read at all)."""
    trickler = _Trickler()
    try:
        job = queued_job(ctx, db_session, webhook_url=trickler.url, webhook_events=["job.canceled"])
        from shared import jobs as job_rows
        from shared.states import JobStatus
        from shared.transitions import change_job

        change_job(ctx, job.id, JobStatus.CANCELED, lambda session: job_rows.cancel(session, job.id))
        [message] = messages(db_session, job.id)
        started = time.monotonic()
        assert deliver(ctx, ctx.celery, message.id) == "retrying"
        took = time.monotonic() - started
    finally:
        trickler.close()
    assert took < ctx.settings.webhook_timeout + 2  # the test settings' 3 s, not 300 s of trickle
    [attempt] = db_session.query(WebhookAttempt).filter_by(delivery_id=message.id).all()
    assert attempt.error.startswith("DeadlinePassed: no whole answer within 3 s")


def test_a_redelivery_after_a_lost_attempt_starts_its_retry_schedule_afresh(db_session):
    """``reopen`` set attempts to 0; the failing attempt then recorded with retries_done -1 picked the schedule's
    last delay (4 hours) for a message the API had just said it would send again now. Its budget now counts from
    the attempts it had when reopened."""
    import random

    from tests.factories import make_job

    job = make_job(db_session, webhook_url="http://127.0.0.1:9/hook")
    message = WebhookDelivery(id="msg_inflight", job_id=job.id, event="job.succeeded", url=job.webhook_url,
                              payload="{}", status="pending", attempts=1)
    db_session.add(message)
    db_session.flush()
    deliveries.reopen(db_session, message)  # the API's redeliver, attempt 1 claimed long ago (lease out)
    delay = deliveries.record_attempt(db_session, message, 500, 10.0, "HTTP 500", (5.0, 30.0, 14400.0),
                                      random.Random(1))
    assert 4 <= delay <= 6


def test_a_name_that_does_not_resolve_now_is_retried_and_a_refused_address_is_final(ctx, db_session, monkeypatch):
    """A DNS outage (EAI_AGAIN) at delivery failed the message for good, as a refused address does."""
    import socket

    def dns_down(*args, **kwargs):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    job = queued_job(ctx, db_session, webhook_url="http://hooks.example.test/hook", webhook_events=["job.canceled"])
    from shared import jobs as job_rows
    from shared.states import JobStatus
    from shared.transitions import change_job

    change_job(ctx, job.id, JobStatus.CANCELED, lambda session: job_rows.cancel(session, job.id))
    [message] = messages(db_session, job.id)
    monkeypatch.setattr(socket, "getaddrinfo", dns_down)
    assert deliver(ctx, ctx.celery, message.id) == "retrying"
    db_session.expire_all()
    assert db_session.get(WebhookDelivery, message.id).status == "pending"


def test_a_name_resolving_to_a_private_address_goes_the_way_of_one_that_does_not_resolve(ctx, db_session,
                                                                                          monkeypatch):
    """The words were the same, the course was not: a private answer failed the message at once ("refused: ..."),
    no answer was retried, and the delivery log showed which, so a tenant could map the deployment's names."""
    import socket

    from shared import jobs as job_rows
    from shared.states import JobStatus
    from shared.transitions import change_job

    resolver = one_internal_name("postgres")
    ctx.settings = ctx.settings.with_overrides(webhook_allow_private=False)
    seen = []
    for host in ("postgres", "nosuchhost"):
        job = queued_job(ctx, db_session, webhook_url=f"http://{host}/hook", webhook_events=["job.canceled"])
        change_job(ctx, job.id, JobStatus.CANCELED, lambda session, job_id=job.id: job_rows.cancel(session, job_id))
        [message] = messages(db_session, job.id)
        with monkeypatch.context() as patched:
            patched.setattr(socket, "getaddrinfo", resolver)
            patched.setattr(socket.socket, "connect", no_connections)
            outcome = deliver(ctx, ctx.celery, message.id)
        db_session.expire_all()
        [attempt] = db_session.query(WebhookAttempt).filter_by(delivery_id=message.id).all()
        seen.append((outcome, db_session.get(WebhookDelivery, message.id).status,
                     attempt.error.replace(host, "NAME")))
    assert seen[0] == seen[1] and seen[0][:2] == ("retrying", "pending")


def test_a_tenants_attempts_in_flight_are_capped_so_its_dead_receiver_cannot_hold_every_slot(ctx, db_session,
                                                                                               receiver):
    """One queue and a few slots serve every tenant: a customer whose receiver never answers held each slot for the
    whole timeout per attempt, and every other customer's webhooks waited behind it for hours. Past its cap a
    tenant's message is put off a few seconds, no attempt counted, while another tenant's goes out at once."""
    from shared import jobs as job_rows
    from shared.deliveries import claim
    from shared.states import JobStatus
    from shared.transitions import change_job

    ctx.settings = ctx.settings.with_overrides(webhook_tenant_concurrency=2)

    def message_of(tenant):
        job = queued_job(ctx, db_session, webhook_url=receiver.url, webhook_events=["job.canceled"], tenant=tenant)
        change_job(ctx, job.id, JobStatus.CANCELED, lambda session: job_rows.cancel(session, job.id))
        [message] = messages(db_session, job.id)
        return message.id

    hung = [message_of("bulk") for _ in range(2)]
    for message_id in hung:  # two attempts of "bulk" are being made (at a receiver that never answers)
        assert claim(db_session, message_id, 60)
    db_session.commit()
    third, other = message_of("bulk"), message_of("calm")
    assert deliver(ctx, ctx.celery, third) == "deferred"
    db_session.expire_all()
    put_off = db_session.get(WebhookDelivery, third)
    assert put_off.attempts == 0 and put_off.status == "pending" and put_off.leased_until is None
    assert put_off.next_attempt_at.replace(tzinfo=UTC) > datetime.now(UTC)
    assert deliver(ctx, ctx.celery, other) == "delivered"  # another tenant is not held up
    assert deliver(ctx, ctx.celery, third) == "skipped"  # not due yet: the publish a few seconds on takes it
    assert [request["headers"]["webhook-id"] for request in receiver.requests] == [other]
    ctx.settings = ctx.settings.with_overrides(webhook_tenant_concurrency=0)  # 0: no cap
    db_session.query(WebhookDelivery).filter_by(id=third).update({"next_attempt_at": None})
    db_session.commit()
    assert deliver(ctx, ctx.celery, third) == "delivered"


def test_a_name_server_that_does_not_answer_ends_the_attempt_within_its_timeout(ctx, db_session, monkeypatch):
    """The lookup of the receiver's name was outside the attempt's deadline: a name server that never answers
    held a webhook worker for as long as the system's resolver tried. Here the lookup hangs (an event nobody
    sets) and the attempt ends at UPSCALER_WEBHOOK_TIMEOUT (3 s in the tests), retried as a DNS outage."""
    import socket
    import threading

    never = threading.Event()

    def hangs(*args, **kwargs):
        never.wait(60)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    job = queued_job(ctx, db_session, webhook_url="http://hooks.example.test/hook", webhook_events=["job.canceled"])
    from shared import jobs as job_rows
    from shared.states import JobStatus
    from shared.transitions import change_job

    change_job(ctx, job.id, JobStatus.CANCELED, lambda session: job_rows.cancel(session, job.id))
    [message] = messages(db_session, job.id)
    monkeypatch.setattr(socket, "getaddrinfo", hangs)
    ended = []
    attempt = threading.Thread(target=lambda: ended.append(deliver(ctx, ctx.celery, message.id)), daemon=True)
    attempt.start()
    attempt.join(30)  # a guard, not a timing: the attempt hung for the lookup's 60 s
    never.set()
    assert ended == ["retrying"]
    db_session.expire_all()
    assert db_session.get(WebhookDelivery, message.id).status == "pending"
    [attempted] = db_session.query(WebhookAttempt).filter_by(delivery_id=message.id).all()
    assert "did not resolve within 3 s" in attempted.error


def test_an_attempt_ended_by_anything_unexpected_is_recorded_and_the_log_keeps_the_receivers_token_out(
        ctx, db_session, monkeypatch, caplog):
    """Celery's soft time limit (and any error outside OSError and HTTPException) left the attempt unrecorded: the
    message stayed pending, was claimed again after its lease, and never reached failed. The log line showed the
    URL's query, where receivers keep their tokens."""
    from billiard.exceptions import SoftTimeLimitExceeded

    from worker import webhook_delivery

    def cut_off(*args, **kwargs):
        raise SoftTimeLimitExceeded()

    job = queued_job(ctx, db_session, webhook_url="http://127.0.0.1:9/hook?token=s3cret",
                     webhook_events=["job.canceled"])
    from shared import jobs as job_rows
    from shared.states import JobStatus
    from shared.transitions import change_job

    change_job(ctx, job.id, JobStatus.CANCELED, lambda session: job_rows.cancel(session, job.id))
    [message] = messages(db_session, job.id)
    monkeypatch.setattr(webhook_delivery, "post_within", cut_off)
    with caplog.at_level("INFO", logger="worker.webhook_delivery"):
        assert deliver(ctx, ctx.celery, message.id) == "retrying"
    db_session.expire_all()
    [attempted] = db_session.query(WebhookAttempt).filter_by(delivery_id=message.id).all()
    assert attempted.error.startswith("SoftTimeLimitExceeded")
    assert "http://127.0.0.1:9/hook?…" in caplog.text and "s3cret" not in caplog.text


def test_a_webhook_timeout_past_what_a_delivery_task_may_take_is_refused_at_start():
    from shared.settings import MAX_WEBHOOK_TIMEOUT, Settings, SettingsError

    with pytest.raises(SettingsError, match="UPSCALER_WEBHOOK_TIMEOUT must be at most"):
        Settings.from_env(webhook_timeout=MAX_WEBHOOK_TIMEOUT + 1)
    assert Settings.from_env(webhook_timeout=MAX_WEBHOOK_TIMEOUT).webhook_timeout == MAX_WEBHOOK_TIMEOUT


def test_a_payloads_links_are_absolute_where_the_public_url_is_set(settings, db_session):
    """They were paths of no host (``/v1/jobs/…``): a receiver could not follow them."""
    from shared.webhooks import record_event
    from tests.factories import make_job
    from worker.context import WorkerContext

    public = WorkerContext.create(settings.with_overrides(public_url="https://upscale.example.com/"))
    try:
        job = make_job(db_session, webhook_url="http://127.0.0.1:9/hook", status="succeeded",
                       output_key="results/ab/c.png")  # a succeeded job has its result
        with public.sessions() as session:
            message = session.get(WebhookDelivery, record_event(session, session.get(type(job), job.id),
                                                                "job.succeeded", public.storage, public.settings))
            links = json.loads(message.payload)["data"]["links"]
        assert links == {"self": f"https://upscale.example.com/v1/jobs/{job.id}",
                         "result": f"https://upscale.example.com/v1/jobs/{job.id}/result"}
    finally:
        public.engine.dispose()


def test_after_a_rotation_a_message_verifies_with_the_new_secret_and_for_the_grace_with_the_old(
        ctx, db_session, receiver):
    from shared.tenants import create_key
    from shared.webhooks import rotate_secret, tenant_secrets

    create_key(db_session, "acme")
    db_session.commit()
    old = signing_secret(ctx.settings, "acme")
    new = rotate_secret(db_session, ctx.settings, "acme").current
    db_session.commit()
    job = queued_job(ctx, db_session, webhook_url=receiver.url, tenant="acme")
    assert pipeline.run_job(ctx, job.id) == "succeeded"
    deliver_all(ctx, db_session, job.id)
    [request] = receiver.requests
    assert len(request["headers"]["webhook-signature"].split(" ")) == 2
    for secret in (new, old):
        assert Webhook(secret).verify(request["body"], request["headers"])["data"]["id"] == job.id
    with pytest.raises(ValueError, match="grace"):  # a previous secret never stops signing: refused, unrotated
        rotate_secret(db_session, ctx.settings, "acme", timedelta(days=366))
    assert tenant_secrets(db_session, ctx.settings, "acme").current == new


def test_a_redelivery_waits_for_an_attempt_in_flight_and_keeps_the_count_beside_its_log(ctx, db_session):
    """Reopened while an attempt was being made, a second worker POSTed the same message at the same time, and the
    listing said ``attempts 0`` beside a one-entry log."""
    from shared.deliveries import InFlight, claim, reopen

    job = queued_job(ctx, db_session, webhook_url="http://127.0.0.1:9/hook", webhook_events=["job.canceled"])
    from shared import jobs as job_rows
    from shared.states import JobStatus
    from shared.transitions import change_job

    change_job(ctx, job.id, JobStatus.CANCELED, lambda session: job_rows.cancel(session, job.id))
    [message] = messages(db_session, job.id)
    assert claim(db_session, message.id, 60)  # a worker is making attempt 1
    db_session.commit()
    db_session.expire_all()
    message = db_session.get(WebhookDelivery, message.id)
    with pytest.raises(InFlight):
        reopen(db_session, message)
    deliveries.record_attempt(db_session, message, 500, 5.0, "HTTP 500", (5.0, 30.0))
    reopen(db_session, message)  # recorded: it may go again, with the whole schedule ahead of it
    assert (message.attempts, message.retries_from, message.status) == (1, 1, "pending")
    message.attempts += 1  # attempt 2 (the redelivery's first) fails too
    assert 4 <= deliveries.record_attempt(db_session, message, 500, 5.0, "HTTP 500", (5.0, 30.0)) <= 6


def test_a_redelivery_read_before_a_worker_claims_the_message_does_not_send_it_twice(ctx, db_session):
    """The check read the row, then wrote it: a worker claiming the message in between had its lease overwritten,
    and the redelivery's task POSTed the message again while the first attempt ran."""
    from shared.deliveries import InFlight, claim, reopen

    job = queued_job(ctx, db_session, webhook_url="http://127.0.0.1:9/hook", webhook_events=["job.canceled"])
    from shared import jobs as job_rows
    from shared.states import JobStatus
    from shared.transitions import change_job

    change_job(ctx, job.id, JobStatus.CANCELED, lambda session: job_rows.cancel(session, job.id))
    [message] = messages(db_session, job.id)
    assert message.leased_until is None  # the API's request read it here, no attempt being made...
    with ctx.sessions() as worker:  # ...and a worker claimed it meanwhile
        assert claim(worker, message.id, 60)
        worker.commit()
    with pytest.raises(InFlight):
        reopen(db_session, message)
    db_session.rollback()
    assert not claim(db_session, message.id, 60)  # still the first attempt's: no second POST at the same time


def test_an_attempt_lost_with_its_worker_does_not_block_redelivery_until_the_next_retry(ctx, db_session):
    """Counting attempts against recorded ones, one attempt lost with its worker (OOM, SIGKILL) left every later
    scheduled retry looking in flight: redeliver answered 409 for hours with nothing being sent."""
    from datetime import timedelta

    from shared.deliveries import claim, reopen
    from shared.models import utcnow

    job = queued_job(ctx, db_session, webhook_url="http://127.0.0.1:9/hook", webhook_events=["job.canceled"])
    from shared import jobs as job_rows
    from shared.states import JobStatus
    from shared.transitions import change_job

    change_job(ctx, job.id, JobStatus.CANCELED, lambda session: job_rows.cancel(session, job.id))
    [message] = messages(db_session, job.id)
    assert claim(db_session, message.id, 60)  # attempt 1: its worker dies, nothing is recorded
    db_session.commit()
    db_session.expire_all()
    message = db_session.get(WebhookDelivery, message.id)
    message.leased_until = message.next_attempt_at = utcnow() - timedelta(seconds=1)  # its lease ran out
    message.attempts += 1  # attempt 2 runs and fails: a retry is scheduled in the future
    deliveries.record_attempt(db_session, message, 500, 5.0, "HTTP 500", (5.0, 30.0))
    assert message.next_attempt_at > utcnow() and message.attempts > 1  # two counted, one recorded
    reopen(db_session, message)  # nothing is being sent: it may go now
    assert message.status == "pending" and message.next_attempt_at <= utcnow()


def test_an_attempts_log_line_carries_its_jobs_id(ctx, db_session, receiver):
    """An operator asked why a job's webhook never arrived queried its job_id and found the job's lines only: the
    attempt's line ("webhook msg_… to …: retrying (HTTP 500)") named the message, not the job."""
    import logging

    from shared import jobs as job_rows
    from shared.logs import JobIdFilter
    from shared.states import JobStatus
    from shared.transitions import change_job

    job = queued_job(ctx, db_session, webhook_url=receiver.url, webhook_events=["job.canceled"])
    change_job(ctx, job.id, JobStatus.CANCELED, lambda session: job_rows.cancel(session, job.id))
    [message] = messages(db_session, job.id)
    lines = []
    handler = logging.Handler(logging.INFO)
    handler.addFilter(JobIdFilter())
    handler.emit = lines.append
    logger = logging.getLogger("worker.webhook_delivery")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        assert deliver(ctx, ctx.celery, message.id) == "delivered"
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    [line] = [record for record in lines if record.getMessage().startswith(f"webhook {message.id}")]
    assert line.job_id == job.id
