"""The Celery configuration as kombu's Redis transport applies it (a Redis of its own, no worker)."""

from __future__ import annotations

import pytest
from kombu import Connection, Consumer, Queue

from cli.processes import start_redis, stop
from shared.queue import DELIVER_WEBHOOK, QUEUES, enqueue_delivery, enqueue_job, make_celery
from shared.settings import Settings
from tests.conftest import SECRET


@pytest.fixture
def app(tmp_path):
    redis, port = start_redis(tmp_path / "redis")
    settings = Settings(env="test", secret_key=SECRET, database_url=f"sqlite:///{tmp_path / 'unused.db'}",
                        redis_url=f"redis://127.0.0.1:{port}/0")
    yield make_celery(settings)
    stop(redis)


def taken_in_order(app, count: int) -> list[tuple[str, str]]:
    """(task, first argument) of the next ``count`` messages, as a worker on every queue takes them one at a time
    (prefetch 1, each acknowledged before the next)."""
    order: list[tuple[str, str]] = []
    with Connection(app.conf.broker_url, transport_options=app.conf.broker_transport_options) as conn:
        channel = conn.channel()
        channel.basic_qos(0, 1, False)

        def got(body, message):
            order.append((message.headers["task"], body[0][0]))
            message.ack()

        with Consumer(channel, [Queue(name) for name in QUEUES], callbacks=[got]):
            while len(order) < count:
                conn.drain_events(timeout=5)
    return order


def test_a_worker_on_every_queue_takes_a_webhook_before_the_inference_backlog_drains(app):
    """``upscaler worker`` consumes every queue by default: with queue_order_strategy "priority" it took inference
    messages while any waited at level 0, and a job.succeeded webhook waited behind the whole backlog."""
    for i in range(4):
        enqueue_job(app, f"job{i}", priority=0)
    enqueue_delivery(app, "delivery")
    tasks = [task for task, _ in taken_in_order(app, 5)]
    assert tasks.index(DELIVER_WEBHOOK) <= 1, tasks


def test_lower_priority_numbers_are_taken_first(app):
    for pri in (9, 5, 0, 3):
        enqueue_job(app, f"job-{pri}", priority=pri)
    enqueue_delivery(app, "delivery")
    jobs = [arg for task, arg in taken_in_order(app, 5) if task != DELIVER_WEBHOOK]
    assert jobs == ["job-0", "job-3", "job-5", "job-9"]
