"""What views need (settings, sessions, storage, the Celery client), built once by the app factory."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis
from celery import Celery
from flask import current_app
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.errors import ApiError
from shared.catalog import ModelInfo
from shared.settings import Settings
from shared.storage import Storage

STORAGE_TURN_SECONDS = 2.0


@dataclass
class Services:
    settings: Settings
    engine: Engine
    # readiness connects afresh each time, within the connect timeout: a pooled connection to a database gone
    # silent (a partition) blocked the probe's query for good
    probe_engine: Engine
    sessions: sessionmaker[Session]
    storage: Storage
    celery: Celery
    catalog: dict[str, ModelInfo]
    redis: redis.Redis
    # ``Prefer: wait`` holds a request thread; at most this many do at once per process, so health checks
    # and other requests always find a free thread (past it, submits answer 202 at once).
    waiters: threading.BoundedSemaphore
    # a submit's DNS lookup of an image_url or webhook_url holds a request thread too (up to
    # ``SUBMIT_RESOLVE_SECONDS``): at most this many at once, past them the URL is left to the worker's own check
    lookups: threading.BoundedSemaphore
    # a call to object storage holds a request thread as long as the store takes to answer (26 s at most,
    # ``API_S3_CALLS``): all but one thread at once per process, so /healthz is answered while the store hangs
    storage_calls: threading.BoundedSemaphore

    @contextmanager
    def storage_turn(self) -> Iterator[None]:
        """Hold one of ``storage_calls`` for a call to object storage, waiting ``STORAGE_TURN_SECONDS`` at most:
        a store that answers takes far less, so past that it hangs and the request answers 503 now."""
        if not self.storage_calls.acquire(timeout=STORAGE_TURN_SECONDS):
            raise ApiError("service_unavailable", "object storage is slow to answer; nothing was changed, retry "
                                                  "later", headers={"Retry-After": "10"})
        try:
            yield
        finally:
            self.storage_calls.release()

    @classmethod
    def redis_for(cls, settings: Settings) -> redis.Redis:
        """One pooled client with short timeouts, for readiness and queue-depth reads."""
        return redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=1)


def services() -> Services:
    return current_app.extensions["upscaler"]
