"""Persistence of split jobs' bands (``worker.split``): every step one conditional UPDATE, like ``shared.jobs``.

A band is claimed under its own lease (a second delivery of its task finds nothing to claim; a band whose
worker vanished is claimable again once its lease expires), and only while its job is running, so a
canceled job's bands stop. Completing a band moves the job's ``bands_done`` counter in the same
transaction (the job's progress). These functions flush but never commit.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, delete, exists, or_, select, update
from sqlalchemy.orm import Session

from shared.models import Job, JobBand, utcnow
from shared.states import TERMINAL_VALUES, JobStatus, worker_lost

PENDING, RUNNING, DONE = "pending", "running", "done"
# Progress while bands run: the assembly after them takes the last stretch.
BANDS_PROGRESS_FROM, BANDS_PROGRESS_TO = 0.05, 0.92


def _job_running(job_id: str):
    return exists().where(Job.id == job_id, Job.status == JobStatus.RUNNING.value)


def _job_live(job_id: str):
    """The job has not ended: running, or queued again to be resumed from its bands (its gathering worker
    vanished, or stopped for an outage). A band running then is finished and kept: refused, its upload was
    deleted and the band stayed locked under its lease, which the resumed job waited out."""
    return exists().where(Job.id == job_id, Job.status.in_([JobStatus.RUNNING.value, JobStatus.QUEUED.value]))


def _job_held(job_id: str, owner: str):
    """The job is running under ``owner``'s lease: its gathering worker."""
    return exists().where(Job.id == job_id, Job.status == JobStatus.RUNNING.value, Job.lease_owner == owner)


def band_held(job_id: str, index: int, owner: str):
    """Band ``index`` of the job is running under ``owner``'s lease."""
    return exists().where(JobBand.job_id == job_id, JobBand.index == index, JobBand.lease_owner == owner,
                          JobBand.status == RUNNING)


def plan(session: Session, job_id: str, owner: str, rows: list[tuple[int, int]], ran: dict,
         timings: dict[str, float]) -> bool:
    """Record a job's bands (once: a re-claimed job keeps its plan and its finished bands). False if the job
    is no longer ours."""
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.lease_owner == owner, Job.status == JobStatus.RUNNING.value,
                          Job.bands_total.is_(None))
        .values(bands_total=len(rows), bands_done=0, ran=ran, timings=timings, updated_at=utcnow()))
    if result.rowcount != 1:
        return session.scalar(select(Job.bands_total).where(Job.id == job_id, Job.lease_owner == owner)) is not None
    now = utcnow()
    session.add_all(JobBand(job_id=job_id, index=i, y0=y0, y1=y1, status=PENDING, attempts=0, updated_at=now)
                    for i, (y0, y1) in enumerate(rows))
    session.flush()
    return True


def claim(session: Session, job_id: str, index: int, owner: str, lease_seconds: int) -> bool:
    """Take a band that is pending, or running under an expired lease, of a running job. Its ``result_key``
    stays: an object a dead attempt may have uploaded, for the new owner to remove."""
    now = utcnow()
    result = session.execute(
        update(JobBand)
        .where(JobBand.job_id == job_id, JobBand.index == index, _job_running(job_id))
        .where(or_(JobBand.status == PENDING, and_(JobBand.status == RUNNING, JobBand.lease_expires_at < now)))
        .values(status=RUNNING, lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease_seconds),
                attempts=JobBand.attempts + 1, updated_at=now))
    if result.rowcount == 1:
        keep_job_alive(session, job_id, lease_seconds)
    return result.rowcount == 1


def claimable(band: JobBand, now: datetime) -> bool:
    """What ``claim`` takes, read off a band already loaded: pending, or running under an expired lease."""
    return band.status == PENDING or (band.status == RUNNING and band.lease_expires_at is not None
                                      and band.lease_expires_at < now)


def keep_job_alive(session: Session, job_id: str, lease_seconds: int) -> bool:
    """Extend a split job's lease while any of its bands runs (whoever holds the job's lease)."""
    now = utcnow()
    result = session.execute(update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING.value)
                             .values(lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now))
    return result.rowcount == 1


def renew(session: Session, job_id: str, index: int, owner: str, lease_seconds: int) -> bool:
    """Extend our band's lease and its job's (while it runs); False means the band is no longer ours or the job
    ended, and we must stop."""
    now = utcnow()
    result = session.execute(
        update(JobBand).where(JobBand.job_id == job_id, JobBand.index == index, JobBand.lease_owner == owner,
                              JobBand.status == RUNNING, _job_live(job_id))
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now))
    if result.rowcount != 1:
        return False
    keep_job_alive(session, job_id, lease_seconds)
    return True


def stage(session: Session, job_id: str, index: int, owner: str, key: str | None) -> bool:
    """Record the object key our band is about to upload (None: the one recorded is deleted); False if the band
    is no longer ours."""
    result = session.execute(
        update(JobBand).where(JobBand.job_id == job_id, JobBand.index == index, JobBand.lease_owner == owner,
                              JobBand.status == RUNNING).values(result_key=key, updated_at=utcnow()))
    return result.rowcount == 1


def complete(session: Session, job_id: str, index: int, owner: str, gathering: bool = False) -> bool:
    """Mark our band done and count it on the job (progress); False if the band or the job is no longer ours.
    ``gathering``: the band went into the gathering worker's own row file, not to storage, so it is done only
    while that worker still holds the job's lease (one frozen past it, then thawed, marked bands done into a
    file no one would read, and the job resumed elsewhere failed on them)."""
    running = _job_held(job_id, owner) if gathering else _job_live(job_id)
    done = session.execute(
        update(JobBand).where(JobBand.job_id == job_id, JobBand.index == index, JobBand.lease_owner == owner,
                              JobBand.status == RUNNING, running)
        .values(status=DONE, lease_owner=None, lease_expires_at=None, updated_at=utcnow()))
    if done.rowcount != 1:
        return False
    _count(session, job_id, +1)
    return True


def _count(session: Session, job_id: str, change: int) -> None:
    """Move the job's ``bands_done`` by ``change`` and its progress with it (one place: a resumed job's progress
    read 0 while its stored bands stood)."""
    session.execute(update(Job).where(Job.id == job_id).values(bands_done=Job.bands_done + change,
                                                               updated_at=utcnow()))
    finished, total = session.execute(select(Job.bands_done, Job.bands_total).where(Job.id == job_id)).one()
    span = BANDS_PROGRESS_TO - BANDS_PROGRESS_FROM
    session.execute(update(Job).where(Job.id == job_id)
                    .values(progress=BANDS_PROGRESS_FROM + span * finished / total))


def reopen_unstored(session: Session, job_id: str, owner: str) -> bool:
    """Bands done by a gathering worker that vanished went only into its own row file: they are to do again.
    The job's progress is set from the bands that stand (its claim had set it to 0). False if the job is not
    ``owner``'s running job."""
    return _reopen(session, job_id, owner, JobBand.result_key.is_(None))


def reopen_lost(session: Session, job_id: str, owner: str, index: int) -> bool:
    """A done band whose stored rows are gone from storage: to do again (not "the input is missing"). False if
    the job is not ``owner``'s running job."""
    return _reopen(session, job_id, owner, JobBand.index == index)


def _reopen(session: Session, job_id: str, owner: str, *which) -> bool:
    """Only the gathering worker, while it holds the job: one that had lost it (frozen past its lease, the job
    taken back, canceled or finished meanwhile) lowered the progress of a job it no longer had, a finished one
    too, and made another gatherer's stored bands pending."""
    held = _job_held(job_id, owner)
    if not session.scalar(select(held)):
        return False
    reopened = session.execute(
        update(JobBand).where(JobBand.job_id == job_id, JobBand.status == DONE, held, *which)
        .values(status=PENDING, result_key=None, lease_owner=None, lease_expires_at=None, attempts=0,
                updated_at=utcnow())  # its runs ended (one completed it): none is a worker this band lost
    ).rowcount
    _count(session, job_id, -reopened)  # with none reopened too: the progress is set from the bands that stand
    return True


def release(session: Session, job_id: str, owner: str) -> int:
    """Hand back the bands ``owner`` holds (a worker stopping for an outage): pending again at once, for the next
    claim, instead of locked under a lease no one renews until it runs out (the gathering worker waited its
    two minutes). ``result_key`` stays: an object this attempt may have uploaded, for the next owner to remove. The
    attempt is not counted: ``attempts`` counts the workers a band lost (``fail_lost``), as a job's does."""
    return session.execute(
        update(JobBand).where(JobBand.job_id == job_id, JobBand.lease_owner == owner, JobBand.status == RUNNING)
        .values(status=PENDING, lease_owner=None, lease_expires_at=None, attempts=JobBand.attempts - 1,
                updated_at=utcnow())).rowcount


def forget_plan(session: Session, job_id: str, owner: str) -> bool:
    """Delete a split job's bands and plan (``worker.split.start_over``); False if the job is not ours."""
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.lease_owner == owner, Job.status == JobStatus.RUNNING.value)
        .values(bands_total=None, bands_done=0, ran=None, updated_at=utcnow()))
    if result.rowcount != 1:
        return False
    session.execute(delete(JobBand).where(JobBand.job_id == job_id))
    return True


def stored_of_ended_jobs(session: Session, limit: int = 500) -> list[tuple[str, int, str]]:
    """(job id, band index, object key) of the stored bands of ended jobs: of no use any more, whoever was meant
    to delete them (a gathering worker gone before a cancel or a ``worker_lost`` had none)."""
    # driven by the bands holding an object (their result_key index), each job looked up by its key: as a join,
    # SQLite walked every ended job and then its bands (550-830 ms per sweep at 300,000 jobs)
    ended = exists().where(Job.id == JobBand.job_id, Job.status.in_(TERMINAL_VALUES))
    return [tuple(row) for row in session.execute(
        select(JobBand.job_id, JobBand.index, JobBand.result_key)
        .where(JobBand.result_key.is_not(None), ended).limit(limit))]


def forget_result(session: Session, job_id: str, index: int, key: str) -> None:
    """The band's object ``key`` is deleted: the band no longer names it."""
    session.execute(update(JobBand).where(JobBand.job_id == job_id, JobBand.index == index,
                                          JobBand.result_key == key).values(result_key=None))


def bands_of(session: Session, job_id: str, first: int = 0) -> list[JobBand]:
    """A job's bands from index ``first`` on, in order."""
    return list(session.scalars(select(JobBand).where(JobBand.job_id == job_id, JobBand.index >= first)
                                .order_by(JobBand.index)))


def stalled(session: Session, pending_stale_seconds: int, limit: int = 500) -> list[JobBand]:
    """Bands of running jobs that need their task published again: running under an expired lease (worker
    killed), or pending so long that their message may be lost."""
    now = utcnow()
    query = (select(JobBand).join(Job, Job.id == JobBand.job_id)
             .where(Job.status == JobStatus.RUNNING.value)
             .where(or_(and_(JobBand.status == RUNNING, JobBand.lease_expires_at < now),
                        and_(JobBand.status == PENDING,
                             JobBand.updated_at < now - timedelta(seconds=pending_stale_seconds))))
             .limit(limit))
    return list(session.scalars(query))


def fail_lost(session: Session, job_id: str, index: int, max_attempts: int) -> bool:
    """Fail a running job ``worker_lost`` whose band ``index`` was claimed ``max_attempts`` times and whose last
    worker vanished too (a band that kills its worker: out of memory). While the gathering worker lived and renewed
    the job, such a band was published again every lease, for ever, each time killing a worker. Conditional on the
    state read: a band claimed again meanwhile keeps its job. False when nothing changed."""
    now = utcnow()
    lost = exists().where(JobBand.job_id == job_id, JobBand.index == index, JobBand.status == RUNNING,
                          JobBand.lease_expires_at < now, JobBand.attempts >= max_attempts)
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING.value, lost)
        .values(status=JobStatus.FAILED.value, updated_at=now, lease_owner=None, lease_expires_at=None,
                **worker_lost(f"{max_attempts} attempts at band {index} of this job", now)))
    return result.rowcount == 1


def touch(session: Session, job_id: str, index: int) -> None:
    """A stalled pending band was published again: wait another period before the next time."""
    session.execute(update(JobBand).where(JobBand.job_id == job_id, JobBand.index == index, JobBand.status == PENDING)
                    .values(updated_at=utcnow()))
