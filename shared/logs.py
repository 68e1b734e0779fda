"""Logging for every process: plain text for people, or one JSON object per line for log pipelines.

The id of the job being processed is attached to every record logged while a task works on it
(``job_context``), so all lines of one job can be found with one query.
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


@contextmanager
def job_context(job_id: str) -> Iterator[None]:
    token = current_job.set(job_id)
    try:
        yield
    finally:
        current_job.reset(token)


class JobIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = current_job.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
                 "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
                 "process": record.process}
        if getattr(record, "job_id", None):
            entry["job_id"] = record.job_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(settings: Settings, level: int = logging.INFO) -> None:
    """Route the root logger to stderr in the configured format (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(JobIdFilter())
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)  # Python's warnings (Celery's, libraries') as records in this format, not raw stderr
