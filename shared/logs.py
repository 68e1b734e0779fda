"""Logging for every process: plain text for people, or one JSON object per line for log pipelines.

The id of the job being processed is attached to every record logged while a task works on it
(``job_context``), and the id of the API request being served to every record logged while it is
(``request_context``: the ``X-Request-Id`` the client sent or one made up, answered in the same header and in an
error's body), so all lines of one job, or of one request a customer quotes, can be found with one query.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from shared.settings import Settings

current_job: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_job", default=None)
current_request: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_request", default=None)


@contextmanager
def job_context(job_id: str) -> Iterator[None]:
    token = current_job.set(job_id)
    try:
        yield
    finally:
        current_job.reset(token)


def set_request(request_id: str | None) -> contextvars.Token:
    """Attach ``request_id`` to what this thread logs until ``current_request.reset(token)``."""
    return current_request.set(request_id)


class JobIdFilter(logging.Filter):
    """Adds the job and the API request the record was logged for (None when neither)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = current_job.get()
        record.request_id = current_request.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
                 "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
                 "process": record.process}
        if getattr(record, "job_id", None):
            entry["job_id"] = record.job_id
        if getattr(record, "request_id", None):
            entry["request_id"] = record.request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    """For people: the job's or request's id, where there is one, at the end of the line."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = [f"{name}={value}" for name in ("job_id", "request_id") if (value := getattr(record, name, None))]
        if not ids:
            return line
        first, newline, rest = line.partition("\n")  # after the message, before any traceback
        return f"{first} [{' '.join(ids)}]{newline}{rest}"


def configure_logging(settings: Settings, level: int = logging.INFO) -> None:
    """Route the root logger to stderr in the configured format (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(JobIdFilter())
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pyvips").setLevel(logging.WARNING)  # libvips' INFO is one "threadpool completed" per image
    logging.getLogger("alembic").setLevel(logging.WARNING)  # seven "setup plugin" lines per API process start
    logging.captureWarnings(True)  # Python's warnings (Celery's, libraries') as records in this format, not raw stderr
