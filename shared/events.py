"""The job events a client can subscribe to with a webhook."""

from __future__ import annotations

from shared.models import Job

EVENTS = ("job.started", "job.succeeded", "job.failed", "job.canceled")
DEFAULT_EVENTS = ("job.succeeded", "job.failed", "job.canceled")


def wanted_events(job: Job) -> tuple[str, ...]:
    """The events this job's webhook receives (the terminal ones unless the client chose)."""
    return tuple(job.webhook_events) if job.webhook_events else DEFAULT_EVENTS
