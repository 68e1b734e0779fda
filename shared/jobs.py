"""Job persistence operations shared by the API, the worker and the sweeper.

They flush but never commit: the request or task that called them owns the transaction. Claiming
a job is a single conditional UPDATE that takes a *lease* (owner + expiry): a second delivery of the
same task finds no row to update and does nothing, and a job whose worker vanished becomes
claimable again once its lease expires.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from sqlalchemy import BigInteger, and_, cast, func, or_, select, text, tuple_, update
from sqlalchemy.orm import Session

from shared.job_bands import band_held
from shared.models import Job, JobBand, could_be_job_id, utcnow
from shared.queue import PRIORITY_LEVELS
from shared.states import TERMINAL_VALUES, JobStatus, can_transition, worker_lost


class InvalidCursor(ValueError):
    """A pagination cursor that this API did not produce."""


def encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, job_id = raw.split("|", 1)
        if not could_be_job_id(job_id):
            raise ValueError("not a job id")
        when = datetime.fromisoformat(created)
        if when.tzinfo is None:  # ours always carry UTC; a naive time is a forged cursor, not a 500
            raise ValueError("naive time")
        return when.astimezone(UTC), job_id  # another offset named the same instant: SQLite compares the text
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError) as exc:  # an offset past year 1..9999
        raise InvalidCursor(cursor) from exc


def list_jobs(session: Session, tenant: str, status: str | None, limit: int, cursor: str | None
              ) -> tuple[list[Job], str | None]:
    """A tenant's jobs, newest first; returns one page and the cursor of the next page (None on the last)."""
    query = select(Job).where(Job.tenant == tenant).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    if status:
        query = query.where(Job.status == status)
    if cursor:
        created, job_id = decode_cursor(cursor)
        # one row-value comparison, not ``created_at < c OR (created_at = c AND id < i)``: the OR is no range of
        # ix_jobs_tenant_created_id, so PostgreSQL read every newer job of the tenant to reach a deep page
        query = query.where(tuple_(Job.created_at, Job.id) < tuple_(created, job_id))
    jobs = list(session.scalars(query))
    if len(jobs) > limit:
        return jobs[:limit], encode_cursor(jobs[limit - 1])
    return jobs, None


FAIR_STEP = 2  # every this many waiting jobs of the same tenant push its next job one priority level back


def _active(tenant: str):
    return and_(Job.tenant == tenant, Job.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]))


def active_jobs(session: Session, tenant: str, before: Job | None = None) -> int:
    """A tenant's queued and running jobs (those created up to ``before``, other than it, when given)."""
    query = select(func.count()).select_from(Job).where(_active(tenant))
    if before is not None:
        query = query.where(Job.id != before.id, Job.created_at <= before.created_at)
    return session.scalar(query)


def active_by_status(session: Session, tenant: str) -> dict[str, int]:
    """A tenant's queued and running jobs, counted apart (``GET /v1/usage``); a state with none counts 0."""
    counted = dict(session.execute(select(Job.status, func.count()).where(_active(tenant)).group_by(Job.status)).all())
    return {status.value: counted.get(status.value, 0) for status in (JobStatus.QUEUED, JobStatus.RUNNING)}


def active_job_ids(session: Session, tenant: str) -> list[str]:
    """The ids of a tenant's queued and running jobs, oldest first (``upscaler keys revoke --cancel-jobs``)."""
    return list(session.scalars(select(Job.id).where(_active(tenant)).order_by(Job.created_at, Job.id)))


def lock_tenant(session: Session, tenant: str) -> None:
    """Hold the tenant's submissions one at a time until this transaction ends, so that counting its active jobs
    and adding one is atomic (concurrent submits each counted the same jobs, and 8 at once all passed a limit
    of 2). PostgreSQL: a transaction-scoped advisory lock on the tenant's name. SQLite needs none, provided the
    caller writes the job before it counts: the write takes SQLite's single write lock, and the next writer waits
    for this transaction to end."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("select pg_advisory_xact_lock(hashtext(:key))"), {"key": f"upscaler-tenant:{tenant}"})


def queue_position(session: Session, job: Job) -> int | None:
    """1 + the queued jobs (every tenant) submitted before ``job``: where it stands, before fair reordering; None
    for a job no longer queued (a replayed submit of a running job counted others' queued jobs as ahead of it)."""
    if job.status != JobStatus.QUEUED.value:
        return None
    return 1 + session.scalar(select(func.count()).select_from(Job).where(
        Job.status == JobStatus.QUEUED.value, Job.created_at < job.created_at))


def priority_for(ahead: int) -> int:
    """Queue priority (0 served first) of a job whose tenant has ``ahead`` jobs waiting or running before it,
    in steps. A tenant that floods the queue goes to the back levels, so another tenant's first jobs start
    after at most the jobs already running (docs/operations.md, "Fair scheduling")."""
    return min(PRIORITY_LEVELS - 1, ahead // FAIR_STEP)


def fair_priority(session: Session, job_id: str) -> int:
    """The priority of a stored job (the sweeper's re-publish, a split job's bands); the submit path reuses its
    quota count."""
    job = session.get(Job, job_id)
    return priority_for(active_jobs(session, job.tenant, before=job))


# Fair turns (next_fair_job): how far back a waiting tenant's service is counted, and what every started job
# costs beyond its output pixels: a job's fixed work (download, decode, encode, upload: about 0.1 s, what 0.1 MP
# of network takes), so an image_url whose fetch failed, which has no output size, is not free.
FAIR_WINDOW = timedelta(minutes=10)
FAIR_JOB_OVERHEAD_PIXELS = 100_000


def _ready():
    """A queued job that may run now: not one an outage handed back whose wait (``hand_back``) has not passed.
    Every way a queued job is taken or counted goes through this (the claim, the fair turn, the sweeper's publish
    and count), so a job waiting out an outage is neither run early by another job's message nor given one."""
    return and_(Job.status == JobStatus.QUEUED.value, or_(Job.retry_at.is_(None), Job.retry_at <= utcnow()))


def _taken_back(max_attempts: int):
    """A running job whose worker vanished (its lease ran out), with attempts left: any worker may take it back.
    Past ``max_attempts`` it is the sweeper's to end (``release_lease``: ``worker_lost``); a claim that took it
    back anyway let a job that kills its worker (an out-of-memory input) run for ever."""
    return and_(Job.status == JobStatus.RUNNING.value, Job.lease_expires_at < utcnow(), Job.attempts < max_attempts)


def next_fair_job(session: Session, job_id: str, passed: Collection[str] = (), *, max_attempts: int) -> str | None:
    """The job a worker woken by ``job_id``'s message should claim: a message is a turn, not a job.

    Priorities are fixed when a job is published, so a tenant's k-th job waited behind another's still-queued
    k-th (with 20 large jobs of A queued first, B's fifth small job waited 4.4 of A's jobs). At claim time the
    turn goes to the waiting tenant served least: the output pixels of its jobs started since the oldest job now
    waiting was queued (the same span for every tenant, ``FAIR_WINDOW`` at most: a tenant that was idle is not
    owed the others' hour, and a long backlog does not count against its owner for ever), each job plus
    ``FAIR_JOB_OVERHEAD_PIXELS``, and not the jobs queued again after their worker vanished (their run was lost).
    One span for all: counted from each tenant's own oldest queued job, a client that sends its next job as soon
    as the previous one starts was never charged for anything and took every turn from a tenant with a backlog.
    Its oldest queued job runs first; the message's own job keeps the turn when its tenant is among the least
    served, or when it is taken back from a vanished worker (``_taken_back``). ``passed``: jobs another worker
    claimed first. None when nothing is left to run."""
    own = session.get(Job, job_id) if job_id not in passed else None
    if own is not None and session.scalar(select(Job.id).where(Job.id == job_id, _taken_back(max_attempts))):
        return job_id
    queued = [_ready(), Job.id.not_in(list(passed))]
    waiting = dict(session.execute(select(Job.tenant, func.min(Job.created_at)).where(*queued)
                                   .group_by(Job.tenant)).all())
    if not waiting:
        return None
    since = max(min(waiting.values()), utcnow() - FAIR_WINDOW)
    cost = (cast(func.coalesce(Job.output_width, 0), BigInteger) * func.coalesce(Job.output_height, 0)
            + FAIR_JOB_OVERHEAD_PIXELS)
    served = dict.fromkeys(waiting, 0)
    served.update(session.execute(  # one grouped range over ix_jobs_tenant_started, however many tenants wait
        select(Job.tenant, func.sum(cost)).where(Job.tenant.in_(list(waiting)), Job.started_at >= since,
                                                 Job.status != JobStatus.QUEUED.value)
        .group_by(Job.tenant)).all())
    least = min(served.values())
    fairest = {tenant for tenant, amount in served.items() if amount == least}
    if own is not None and own.tenant in fairest and session.scalar(select(Job.id).where(Job.id == job_id,
                                                                                             _ready())):
        return job_id
    return session.scalar(select(Job.id).where(*queued, Job.tenant.in_(fairest))
                          .order_by(Job.created_at, Job.id).limit(1))


def mark_enqueued(session: Session, job_id: str) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(enqueued_at=utcnow()))


def clear_enqueued(session: Session, job_id: str) -> None:
    """Publishing failed: mark the job as never handed to the broker, for the sweeper."""
    session.execute(update(Job).where(Job.id == job_id).values(enqueued_at=None))


def claim(session: Session, job_id: str, owner: str, lease_seconds: int, *, max_attempts: int) -> bool:
    """Atomically take the job if it is queued (and its outage wait is over), or running under an expired lease
    with attempts left. ``started_at`` stays the first attempt's: the customer's "started" (and a split job's
    ``bands_s`` and ``total_s``) count from when it first ran, not from the attempt that finished it; a whole job's
    timings are those of the attempt that made its result."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id)
        .where(or_(_ready(), _taken_back(max_attempts)))
        .values(status=JobStatus.RUNNING.value, lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=lease_seconds), attempts=Job.attempts + 1,
                started_at=func.coalesce(Job.started_at, now), retry_at=None, progress=0.0, updated_at=now)
    )
    return result.rowcount == 1


def renew(session: Session, job_id: str, owner: str, lease_seconds: int, progress: float | None = None) -> bool:
    """Extend our lease (and record progress); False means we lost the job and must stop."""
    now = utcnow()
    values: dict = {"lease_expires_at": now + timedelta(seconds=lease_seconds), "updated_at": now}
    if progress is not None:
        values["progress"] = progress
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.lease_owner == owner, Job.status == JobStatus.RUNNING.value)
        .values(**values)
    )
    return result.rowcount == 1


# How long a job an outage stopped waits before it may run again: as long as the outage has lasted so far,
# within these bounds (5, 5, 10, 20, 40, 60, 60 ... seconds), so a short blip costs seconds and a long outage
# is not hammered by every queued job.
OUTAGE_BACKOFF = (timedelta(seconds=5), timedelta(seconds=60))


def outage_outlasted(job: Job, grace_seconds: int) -> bool:
    """Outages have kept ``job`` from finishing for longer than the grace period: time to fail it."""
    return job.outage_since is not None and utcnow() - job.outage_since >= timedelta(seconds=grace_seconds)


def hand_back(session: Session, job_id: str, owner: str) -> bool:
    """Our running job back to the queue, unpublished: an outage (object storage unreachable) stopped this
    attempt, not the job. The attempt is not counted (``max_attempts`` is for workers that vanish; a 30-60 s
    outage used every attempt of every queued job), the job may run again after ``OUTAGE_BACKOFF`` (the sweeper
    publishes it then), and ``outage_since`` keeps when the first outage stopped it; False if the job is no
    longer ours."""
    job = session.get(Job, job_id)
    if job is None:
        return False
    now = utcnow()
    since = job.outage_since or now
    low, high = OUTAGE_BACKOFF
    wait = min(max(now - since, low), high)
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.lease_owner == owner, Job.status == JobStatus.RUNNING.value)
        .values(status=JobStatus.QUEUED.value, lease_owner=None, lease_expires_at=None, enqueued_at=None,
                attempts=Job.attempts - 1, retry_at=now + wait, outage_since=since, progress=0.0, updated_at=now))
    return result.rowcount == 1


def take_over(session: Session, job_id: str, owner: str, lease_seconds: int, band: int | None = None) -> bool:
    """Make ``owner`` the lease holder of a running split job, to end it: the worker whose band ``band`` failed
    (bands are done by many workers, so the one who started the job is not necessarily the one who ends it), or
    with no band the gathering worker itself. Only while ``owner`` still holds that band (or the job): a worker
    frozen past its lease, whose band another worker had since redone, failed a healthy job with its late error."""
    now = utcnow()
    held = Job.lease_owner == owner if band is None else band_held(job_id, band, owner)
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING.value, Job.bands_total.is_not(None), held)
        .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now))
    return result.rowcount == 1


def record_input(session: Session, job_id: str, owner: str, **facts) -> bool:
    """Store what a fetched ``image_url`` turned out to be (format, bytes, size); False if the lease is lost."""
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.lease_owner == owner, Job.status == JobStatus.RUNNING.value)
        .values(updated_at=utcnow(), **facts)
    )
    return result.rowcount == 1


def stage_output(session: Session, job_id: str, owner: str, key: str | None) -> bool:
    """Record (before uploading) the key this attempt is about to write; False if the lease is lost."""
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.lease_owner == owner, Job.status == JobStatus.RUNNING.value)
        .values(staged_output_key=key, updated_at=utcnow())
    )
    return result.rowcount == 1


def finish(session: Session, job_id: str, owner: str, status: JobStatus, **values) -> bool:
    """Move our running job to a terminal state; False if the lease was lost meanwhile."""
    if not can_transition(JobStatus.RUNNING, status):
        raise ValueError(f"a running job cannot become {status}")
    now = utcnow()
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.lease_owner == owner, Job.status == JobStatus.RUNNING.value)
        .values(status=status.value, finished_at=now, updated_at=now, lease_owner=None, lease_expires_at=None,
                staged_output_key=None, **values)
    )
    return result.rowcount == 1


def cancel(session: Session, job_id: str) -> bool:
    """Cancel a queued or running job; a running worker notices at its next lease renewal and stops."""
    now = utcnow()
    cancelable = [s.value for s in JobStatus if can_transition(s, JobStatus.CANCELED)]
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.status.in_(cancelable))
        .values(status=JobStatus.CANCELED.value, finished_at=now, updated_at=now, lease_owner=None,
                lease_expires_at=None)
    )
    return result.rowcount == 1


def jobs_to_enqueue(session: Session, stale_seconds: int, limit: int = 500) -> list[str]:
    """Queued jobs never handed to the broker, or handed over so long ago the message may be lost."""
    cutoff = utcnow() - timedelta(seconds=stale_seconds)
    query = (select(Job.id).where(_ready())
             .where(or_(Job.enqueued_at.is_(None), Job.enqueued_at < cutoff))
             .order_by(Job.created_at).limit(limit))
    return list(session.scalars(query))


def count_queued(session: Session) -> int:
    """Every queued job that may run now: each needs a turn (a message) waiting in the broker."""
    return session.scalar(select(func.count()).select_from(Job).where(_ready()))


def expired_leases(session: Session) -> list[Job]:
    """Running jobs whose lease ran out (their worker stopped renewing)."""
    return list(session.scalars(select(Job).where(Job.status == JobStatus.RUNNING.value,
                                                  Job.lease_expires_at < utcnow())))


def release_lease(session: Session, job: Job, max_attempts: int) -> JobStatus | None:
    """Take back one job whose lease ran out: queued again, or failed ``worker_lost`` after max_attempts.

    A conditional UPDATE on exactly the state that was read (same owner, lease still expired, still running),
    like every other transition: a worker that renews or finishes between our read and our write keeps its
    job, and its result is never overwritten. Returns the new status, or None when the job moved meanwhile.
    """
    now = utcnow()
    still_expired = update(Job).where(Job.id == job.id, Job.status == JobStatus.RUNNING.value,
                                      Job.lease_owner == job.lease_owner, Job.lease_expires_at < now)
    common = {"lease_owner": None, "lease_expires_at": None, "updated_at": now}
    if job.attempts >= max_attempts:
        status = JobStatus.FAILED
        # staged_output_key stays: the sweeper deletes that object now, and retention again if that failed
        values = worker_lost(f"{job.attempts} attempts at this job", now)
    else:
        status, values = JobStatus.QUEUED, {"enqueued_at": None}
    result = session.execute(still_expired.values(status=status.value, **values, **common))
    return status if result.rowcount == 1 else None


def stored_keys(job: Job) -> list[str]:
    """The objects an ended job names, to delete when its images go (retention, or its owner's ``DELETE``): an
    upload a vanished or canceled attempt may have left, the input, and the result last, so a deletion that stops
    part-way leaves a job whose result still downloads. Its bands are the band sweep's."""
    return [key for key in (job.staged_output_key, job.input_key, job.output_key) if key]


def mark_expired(session: Session, job_id: str) -> bool:
    """Record that an ended job's objects (``stored_keys``) are deleted; its row stays. The staged key goes too: an
    upload landing later (a canceled attempt finishing its write) is then named by no row, so the orphan sweep
    removes it, where an expired job's name kept it for good. False when it was already expired (or not ended)."""
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.expired_at.is_(None), Job.status.in_(TERMINAL_VALUES))
        .values(expired_at=utcnow(), staged_output_key=None))
    return result.rowcount == 1


def referenced_keys(session: Session, keys: Collection[str]) -> set[str]:
    """Which of ``keys`` a job or a band names (input, result, a staged upload, a band's pixels), expired jobs
    included: a stored object no row names is an orphan (``worker.orphans``)."""
    if not keys:
        return set()
    keys = list(keys)
    named = (select(Job.input_key).where(Job.input_key.in_(keys))
             .union(select(Job.output_key).where(Job.output_key.in_(keys)),
                    select(Job.staged_output_key).where(Job.staged_output_key.in_(keys)),
                    select(JobBand.result_key).where(JobBand.result_key.in_(keys))))
    return set(session.scalars(named))
