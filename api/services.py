"""What views need (settings, sessions, storage, the Celery client), built once by the app factory."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import redis
from celery import Celery
from flask import current_app
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared.catalog import ModelInfo
from shared.settings import Settings
from shared.storage import Storage


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

    @classmethod
    def redis_for(cls, settings: Settings) -> redis.Redis:
        """One pooled client with short timeouts, for readiness and queue-depth reads."""
        return redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=1)


def services() -> Services:
    return current_app.extensions["upscaler"]
