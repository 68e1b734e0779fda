"""Job states and the transitions allowed between them, in one place."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})
# The same states as the strings a job row holds, in one fixed order: the ``IN`` list of every query for ended jobs.
TERMINAL_VALUES: tuple[str, ...] = tuple(sorted(status.value for status in TERMINAL))

# running -> queued is the sweeper handing a job whose worker vanished back to the queue.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELED, JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.QUEUED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELED: frozenset(),
}


def can_transition(current: JobStatus, target: JobStatus) -> bool:
    """Whether a job may move from ``current`` to ``target``."""
    return target in TRANSITIONS[JobStatus(current)]


def worker_lost(attempts: str, now: datetime) -> dict:
    """The columns of a job failed ``worker_lost`` (``attempts``: what kept stopping, "3 attempts at this job"),
    for the sweeper's two ways there: a job's lease, a split job's band (``job_bands.fail_lost``)."""
    return {"error_code": "worker_lost", "finished_at": now,
            "error_message": f"{attempts} stopped without an ending (a worker lost, or the database unreachable "
                             "from it mid-job)"}
