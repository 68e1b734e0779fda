"""Per-process resources of a worker: settings, database sessions, storage, engines.

Built once per process (after fork, so no database connection is shared with the parent) and
reused by every task that process runs.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field

from celery import Celery
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared.db import make_engine, make_session_factory
from shared.queue import make_celery
from shared.settings import Settings
from shared.storage import Storage, make_storage
from worker.engine.registry import EngineRegistry
from worker.imaging import DecodedImage


@dataclass
class WorkerContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    storage: Storage
    engines: EngineRegistry
    celery: Celery
    # The decoded input of the split job whose bands this process is running (worker.split): one at a time.
    band_inputs: dict[str, DecodedImage] = field(default_factory=dict)
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")

    @classmethod
    def create(cls, settings: Settings, celery: Celery | None = None) -> WorkerContext:
        """``celery`` publishes follow-up tasks (webhooks); by default a client for the same broker."""
        engine = make_engine(settings.database_url)
        return cls(settings=settings, engine=engine, sessions=make_session_factory(engine),
                   storage=make_storage(settings), engines=EngineRegistry(settings),
                   celery=celery or make_celery(settings))
