"""The daily output-megapixel quota: counted in Redis per tenant and UTC day, charged from two sides.

The API charges a job when it is submitted with its image (its output size is known then); the worker charges a
job submitted by ``image_url`` once it has fetched the image and knows its size (such jobs cost nothing at
submit, and went uncharged: a tenant could get any number of megapixels by hosting its images). One count, one
rule for both. What was charged, and when, is written on the job; a job that makes nothing for its tenant gives
it back (``refundable``), once, to the day it was charged on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import redis

from shared.models import Job
from shared.settings import Settings
from shared.states import JobStatus
from shared.tenants import Tenant, own_or_default

log = logging.getLogger(__name__)

KEY_TTL_SECONDS = 2 * 86400  # past the day it counts, whatever the clock skew between API and workers


class QuotaExceeded(Exception):
    """The charge would pass the tenant's daily quota; nothing was counted."""

    def __init__(self, message: str, retry_after: int, limit: int):
        super().__init__(message)
        self.retry_after, self.limit = retry_after, limit


class LargerThanQuota(Exception):
    """The job alone is more than the tenant's whole daily quota: no day will take it (nothing was counted)."""

    def __init__(self, message: str, limit: int):
        super().__init__(message)
        self.limit = limit


def daily_limit(tenant: Tenant, settings: Settings) -> int:
    """The tenant's own daily megapixels if its key has one, else the deployment's; 0 means unlimited."""
    return own_or_default(tenant.daily_megapixels, settings.daily_megapixels)


def charge(client: redis.Redis, tenant: str, limit: int, megapixels: float,
           pending_job: tuple[str, str] | None = None) -> datetime | None:
    """Add ``megapixels`` to the tenant's count for today (a negative amount gives some back) and return the moment
    it counted at (its day is the one to give it back to); None when ``limit`` <= 0 (nothing counted). Raise
    ``QuotaExceeded``, with the count as it was, if the charge would pass ``limit``, or ``LargerThanQuota`` if it
    alone is more than ``limit``. With ``pending_job`` (a job id and the attempt's owner), the charge is also noted
    under that job, as that owner's, in the same step, until it is written on the job (``settle_pending``) or given
    back (``give_back_pending``): a worker killed between its charge and its record left a charge no job held, and
    the next attempt charged again. Each attempt has its own note: one note per job was written over by an attempt
    that overlapped (a lost lease charging late), and the charge it held was given back by no one.
    Raises ``redis.RedisError`` when Redis is unreachable: each caller decides what that means."""
    if limit <= 0:
        return None
    if megapixels > limit:  # "retry at midnight" would be a lie: it never fits
        raise LargerThanQuota(f"this job ({megapixels:.1f} output megapixels) is larger than the whole daily quota "
                              f"of {limit} megapixels; ask for a smaller size", limit)
    now = datetime.now(UTC)
    keys = [_day_key(tenant, now)] + ([_pending_key(pending_job[0])] if pending_job else [])
    note, owner = (f"{megapixels!r} {now.isoformat()}", pending_job[1]) if pending_job else ("", "")
    counted, used = client.eval(_CHARGE, len(keys), *keys, repr(megapixels), str(limit), str(KEY_TTL_SECONDS), note,
                                owner)
    if not counted:
        midnight = resets_at(now)
        said = (f"this job ({megapixels:.1f} output megapixels) would pass today's quota of {limit} megapixels"
                if megapixels else f"today's quota of {limit} megapixels is used up, so a job by image_url (charged "
                                   "once its image is fetched) is not taken")
        raise QuotaExceeded(f"{said} ({float(used):.1f} used); it resets at 00:00 UTC",
                            int((midnight - now).total_seconds()) + 1, limit)
    return now


def used_today(client: redis.Redis, tenant: str, moment: datetime) -> float:
    """The tenant's output megapixels counted on the UTC day of ``moment`` (now, read once by the caller for this
    and ``resets_at``: read twice, a request at midnight gave the ended day's count with the next day's end), what
    its daily limit is held against. Raises ``redis.RedisError`` when Redis is unreachable."""
    return float(client.get(_day_key(tenant, moment)) or 0)


def resets_at(moment: datetime) -> datetime:
    """When the day's count that ``moment`` falls in stops counting: the next 00:00 UTC."""
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC) + timedelta(days=1)


# Check and add in one step on the Redis server: added first and taken back when over, a refused charge counted
# for a moment, and a concurrent one that fitted was refused against it (until midnight). The expiry comes with
# the count (a refused first charge of a day left none). A charge of 0 (a job by image_url, charged once fetched)
# is refused once the day is used up: taken, each cost a worker's turn and a download to fail quota_exceeded.
# A second key, if given, is the job's hash of notes: the charge (ARGV[4]: "megapixels iso-moment") under its
# attempt's owner (ARGV[5]), for a job not yet holding it.
# Returns {1 counted | 0 refused, the count before it}.
_CHARGE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
if (amount > 0 and used + amount > limit) or (amount == 0 and used >= limit) then
  return {0, tostring(used)}
end
redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
if KEYS[2] then
  redis.call('HSET', KEYS[2], ARGV[5], ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return {1, tostring(used)}
"""


def give_back(client: redis.Redis, tenant: str, megapixels: float, charged_at: datetime) -> None:
    """Return a charge to the day it was made on. A day whose count has expired is left alone. Raises
    ``redis.RedisError`` when Redis is unreachable."""
    key = _day_key(tenant, charged_at)
    if megapixels > 0 and client.exists(key):
        client.incrbyfloat(key, -megapixels)


def give_back_pending(client: redis.Redis, tenant: str, job_id: str, owner: str | None = None) -> None:
    """Give back the charges noted under a job by ``charge(pending_job=...)`` and not written on it: their attempts
    stopped first. The next attempt calls this before charging again (every attempt's notes); an attempt that
    fails before its record calls it with its own ``owner``, so it never gives back a note a worker that took the
    job over has made since. Taken in one step on the server, so a note is given back once. Raises
    ``redis.RedisError`` when Redis is unreachable (the notes stay, for the next attempt)."""
    for noted in client.eval(_TAKE_NOTES, 1, _pending_key(job_id), owner or ""):
        megapixels, moment = noted.decode().split(" ")
        give_back(client, tenant, float(megapixels), datetime.fromisoformat(moment))


# Take (read and delete) a job's charge notes: ARGV[1]'s alone, or every one when it is empty. Returns the notes.
_TAKE_NOTES = """
if ARGV[1] == '' then
  local notes = redis.call('HVALS', KEYS[1])
  redis.call('DEL', KEYS[1])
  return notes
end
local noted = redis.call('HGET', KEYS[1], ARGV[1])
if not noted then
  return {}
end
redis.call('HDEL', KEYS[1], ARGV[1])
return {noted}
"""


def settle_pending(client: redis.Redis, job_id: str, owner: str) -> None:
    """The job now holds ``owner``'s charge (``charged_megapixels``, ``charged_at``), which its own ending gives back
    if it must: that note goes (another attempt's, a lost lease's, is its own to give back). Raises
    ``redis.RedisError`` when Redis is unreachable (the note then expires, and no later attempt reads it: a job
    whose input is recorded is not fetched, nor charged, again)."""
    client.hdel(_pending_key(job_id), owner)


def refundable(job: Job) -> bool:
    """Whether a job that has just ended made nothing its tenant should pay for: failed, whatever the cause (the
    platform's own failures, a lost worker or an unreachable store, were never the customer's, and a file that
    fails costs a worker little), or canceled before any worker started it. A job canceled while it ran keeps its
    charge: the work was done until the customer stopped it."""
    return job.status == JobStatus.FAILED.value or (job.status == JobStatus.CANCELED.value and job.started_at is None)


def take_charge(job: Job) -> tuple[float, datetime] | None:
    """Take the job's recorded charge off it (in the caller's transaction, which changed its state, so only one
    transition ever takes it): what to give back after the commit, or None if it was charged nothing."""
    if job.charged_megapixels is None or job.charged_at is None:
        return None
    taken = (job.charged_megapixels, job.charged_at)
    job.charged_megapixels = job.charged_at = None
    return taken


def refund(settings: Settings, tenant: str, taken: tuple[float, datetime]) -> None:
    """Give back a charge taken off a job; with Redis unreachable the charge stays counted (logged)."""
    _best_effort(settings, lambda client: give_back(client, tenant, *taken),
                 f"a quota charge of {taken[0]:.2f} megapixels could not be given back to tenant {tenant}")


def refund_pending(settings: Settings, tenant: str, job_id: str, owner: str | None = None) -> None:
    """``give_back_pending`` for an attempt (``owner``) ending before its record, or for every attempt's notes of a
    job that ended making nothing; with Redis unreachable the notes stay, for the job's next attempt to give back
    (logged), or until they expire."""
    _best_effort(settings, lambda client: give_back_pending(client, tenant, job_id, owner),
                 f"job {job_id}'s unrecorded quota charge could not be given back yet")


def settled(settings: Settings, job_id: str, owner: str) -> None:
    """``settle_pending`` once the job's record holds ``owner``'s charge; with Redis unreachable the note expires."""
    _best_effort(settings, lambda client: settle_pending(client, job_id, owner),
                 f"job {job_id}'s quota charge note could not be dropped (it expires)")


def _best_effort(settings: Settings, call: Callable[[redis.Redis], None], failure: str) -> None:
    """Run one counting step on a client of its own; an unreachable Redis is logged, not raised: the job goes on."""
    client = client_for(settings)
    try:
        call(client)
    except redis.RedisError as exc:
        log.warning("%s (Redis unavailable): %s", failure, exc)
    finally:
        client.close()


def client_for(settings: Settings) -> redis.Redis:
    """A Redis client for counting, with the API's short timeouts: a charge or refund is one small command, and a
    Redis that accepts and never answers held a cancel request (and ``keys revoke --cancel-jobs``, per job) for
    11 s with the 5 s connect and 10 s read it had."""
    return redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=2)


def _pending_key(job_id: str) -> str:
    return f"upscaler:mp-notes:{job_id}"  # a hash by attempt owner


def _day_key(tenant: str, moment: datetime) -> str:
    return f"upscaler:mp:{tenant}:{moment.astimezone(UTC):%Y%m%d}"
