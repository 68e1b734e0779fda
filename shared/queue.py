"""The Celery application's configuration and how jobs are put on the queue.

There is one Celery app object per process: the worker's (``worker.celery_app.celery``) and, in the
API, a client built by the same ``make_celery`` that only publishes messages by task name, so the
API never imports worker code or TensorFlow. Redis carries only "job <id> is ready"; the database
is the source of truth.
"""

from __future__ import annotations

import base64
import collections
import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from shared.settings import Settings

if TYPE_CHECKING:  # imported where an app is made: the CLI's training commands run where Celery is not installed
    from celery import Celery

log = logging.getLogger(__name__)
RUN_JOB = "upscaler.run_job"
RUN_BAND = "upscaler.run_band"
SWEEP = "upscaler.sweep"
DELIVER_WEBHOOK = "upscaler.deliver_webhook"
INFERENCE_QUEUE = "inference"
MAINTENANCE_QUEUE = "maintenance"
WEBHOOK_QUEUE = "webhooks"
QUEUES = (INFERENCE_QUEUE, MAINTENANCE_QUEUE, WEBHOOK_QUEUE)  # every queue a worker may consume


PRIORITY_LEVELS = 10
PRIORITY_SEPARATOR = ":"


def make_celery(settings: Settings, publisher: bool = False) -> Celery:
    """A configured Celery app (tasks are registered by the worker package, not here). A ``publisher`` (the API)
    only sends: each of its Redis calls waits at most ``UPSCALER_ENQUEUE_TIMEOUT`` (a publish tries twice, the
    second on a new connection, as after a Redis restart), so a stalled Redis holds a submit a few seconds, not
    the 7-17 s of a worker's 5 s socket floor (which its blocking reads need), and the sweeper publishes the job
    later."""
    from celery import Celery
    from kombu import Queue

    visibility = settings.visibility_timeout or max(settings.job_time_limit * 2, 3600)
    app = Celery("upscaler", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_queues=tuple(Queue(name) for name in QUEUES),
        task_default_queue=MAINTENANCE_QUEUE,
        task_routes={RUN_JOB: {"queue": INFERENCE_QUEUE}, RUN_BAND: {"queue": INFERENCE_QUEUE},
                     SWEEP: {"queue": MAINTENANCE_QUEUE},
                     DELIVER_WEBHOOK: {"queue": WEBHOOK_QUEUE}},
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Take a message only while a pool process is free (Celery 5.6+, Redis only). Prefetch 1 alone does not
        # hold after a broker reconnection: the new channel counts from zero while the old channel's task still
        # runs, so a busy worker reserved the next job and held it until its own job ended (up to the time
        # limit), out of Redis, where an idle worker, the queue-depth metric and the autoscaler would have seen it.
        worker_disable_prefetch=True,
        worker_max_tasks_per_child=None,
        # Celery kills a pool process that has not reported UP within this (default 4 s). The network loads
        # after UP (worker.celery_app), so this only needs to cover import and connections on a busy machine.
        worker_proc_alive_timeout=settings.worker_start_timeout,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=settings.enqueue_timeout,
        broker_transport_options={
            # A delivered-but-unacknowledged task returns to the queue after this long; the job's
            # database lease (not this timeout) is what keeps two workers from running it at once.
            "visibility_timeout": visibility,
            # How often kombu looks for unacknowledged messages to restore: its default (about every 100 s)
            # is far slower than a short visibility timeout.
            "unacked_restore_interval": max(1, min(10, visibility // 4)),
            "unacked_restore_throttle": 1 if visibility < 600 else 10,
            "socket_connect_timeout": settings.enqueue_timeout,
            "socket_timeout": settings.enqueue_timeout if publisher else max(settings.enqueue_timeout, 5.0),
            # Fair scheduling: a job's priority falls with how many jobs its tenant already has waiting
            # (shared.jobs.fair_priority), and Redis serves lower numbers first, each level in its own list.
            # kombu's BRPOP names every level of every queue, level by level, so the levels need no queue order
            # and the queues keep kombu's default round robin: "priority" (queues in a fixed order) kept a worker
            # on every queue, ``upscaler worker``'s default, on inference while any job waited at level 0, and
            # webhooks and sweeps (always level 0) waited behind the whole inference backlog.
            "priority_steps": list(range(PRIORITY_LEVELS)),
            "sep": PRIORITY_SEPARATOR,
        },
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2,
                                   "interval_max": 0.5},
        # a sweep not taken within its interval is dropped, not kept: the next one does its work (they piled up
        # while the maintenance worker was down, then ran all at once)
        beat_schedule={"sweep": {"task": SWEEP, "schedule": settings.sweep_interval,
                                 "options": {"expires": settings.sweep_interval}}},
        worker_hijack_root_logger=False,
    )
    return app


def enqueue_job(celery: Celery, job_id: str, priority: int = 0) -> None:
    """Publish "run job <id>" at a priority (0 first); raises on broker failure (callers decide)."""
    celery.send_task(RUN_JOB, args=[job_id], queue=INFERENCE_QUEUE, retry=True, priority=priority)


def enqueue_band(celery: Celery, job_id: str, index: int, priority: int = 0) -> None:
    """Publish "run band <index> of split job <id>" on the inference queue, where every free worker takes one."""
    celery.send_task(RUN_BAND, args=[job_id, index], queue=INFERENCE_QUEUE, retry=True, priority=priority)


def queue_lists(queue: str) -> list[str]:
    """The Redis lists holding a queue's messages: one per priority level (level 0 is the bare name)."""
    return [queue] + [f"{queue}{PRIORITY_SEPARATOR}{level}" for level in range(1, PRIORITY_LEVELS)]


def queue_depth(client, queue: str) -> int:
    """Messages waiting in a queue, over every priority level."""
    with client.pipeline() as pipe:
        for name in queue_lists(queue):
            pipe.llen(name)
        return sum(pipe.execute())


SCAN_CHUNK = 1000


def waiting_messages(client, queue: str) -> collections.Counter[tuple[str, ...]]:
    """``(task name, *args as text)`` of every message waiting in ``queue``, at any priority level, with how many
    of each (a job's message may wait twice).

    The sweeper asks before publishing again a message that may be lost, so a long backlog is not doubled every
    ``queued_stale_seconds`` (which the autoscaler, reading the lists' lengths, would take for more work), nor a
    webhook message that waits for a webhook worker sent again every sweep.
    Messages already handed to a worker (kombu's ``unacked``) do not count: that worker may be the one that
    died, and its message comes back only after the visibility timeout. Read in chunks: memory stays bounded."""
    found: collections.Counter[tuple[str, ...]] = collections.Counter()
    for name in queue_lists(queue):
        for start in range(0, client.llen(name), SCAN_CHUNK):
            for raw in client.lrange(name, start, start + SCAN_CHUNK - 1):
                try:
                    message = json.loads(raw)
                    args = json.loads(base64.b64decode(message["body"]))[0]
                    found[(message["headers"]["task"], *(str(arg) for arg in args))] += 1
                except (ValueError, KeyError, IndexError, TypeError):
                    continue  # not one of ours: it names no job
    return found


def enqueue_delivery(celery: Celery, delivery_id: str, countdown: float = 0) -> None:
    """Publish "deliver webhook message <id>" (the sweeper re-publishes it if this is lost)."""
    celery.send_task(DELIVER_WEBHOOK, args=[delivery_id], queue=WEBHOOK_QUEUE, countdown=countdown or None,
                     retry=True)


def publish_deliveries(celery: Celery, delivery_ids: Iterable[str | None]) -> None:
    """Publish freshly recorded webhook messages; a failure is fine (the sweeper publishes due ones)."""
    for delivery_id in filter(None, delivery_ids):
        try:
            enqueue_delivery(celery, delivery_id)
        except Exception:
            log.warning("could not publish webhook %s now; the sweeper will", delivery_id)
