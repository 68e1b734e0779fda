"""Per-tenant limits, counted in Redis: a request rate, active jobs, and output megapixels per day.

* **Rate**: a fixed one-minute window per tenant (``INCR`` + ``EXPIRE``); past the limit, 429 ``rate_limited``
  with ``Retry-After`` and the IETF ``RateLimit-Policy`` / ``RateLimit`` headers (which every ``/v1`` answer
  carries, so clients can pace themselves before they hit it).
* **Active jobs** (queued + running): counted in the database, the source of truth, in the transaction that
  adds the job (``jobs.lock_tenant``).
* **Megapixels per UTC day** (``shared.quota``): a job's cost is its output megapixels, reserved in Redis when
  the job is accepted; a job by ``image_url`` is charged by the worker once it knows the image's size.

A limit of 0 means unlimited. A tenant's key may carry its own limits (``upscaler keys create``); otherwise
the deployment's defaults apply. If Redis is unreachable the rate and daily checks let requests through
(logged): the job queue needs Redis anyway, and refusing every customer for a cache outage is worse.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

import redis
from flask import Flask, Response, g
from sqlalchemy.exc import SQLAlchemyError

from api.errors import ApiError
from api.services import Services, services
from shared import jobs, quota
from shared.settings import Settings
from shared.tenants import Tenant, own_or_default

log = logging.getLogger(__name__)
WINDOW_SECONDS = 60


def _headers(limit: int, remaining: int, reset: int) -> dict[str, str]:
    return {"RateLimit-Policy": f'"per-minute";q={limit};w={WINDOW_SECONDS}',
            "RateLimit": f'"per-minute";r={max(remaining, 0)};t={reset}'}


def rate_limit(tenant: Tenant, settings: Settings) -> int:
    """The tenant's requests a minute: its key's own limit, else the deployment's; 0 means unlimited."""
    return own_or_default(tenant.rate_limit, settings.rate_limit_per_minute)


def active_limit(tenant: Tenant, settings: Settings) -> int:
    """The tenant's queued + running jobs at once: its key's own limit, else the deployment's; 0 means unlimited."""
    return own_or_default(tenant.max_active, settings.max_active_jobs)


def check_rate(client: redis.Redis, tenant: Tenant, settings: Settings) -> dict[str, str]:
    """Count this request; raise 429 past the tenant's per-minute limit. Returns the RateLimit headers."""
    limit = rate_limit(tenant, settings)
    if limit <= 0:
        return {}
    now = int(time.time())
    window = now // WINDOW_SECONDS
    reset = (window + 1) * WINDOW_SECONDS - now
    key = f"upscaler:rate:{tenant.name}:{window}"
    try:
        with client.pipeline() as pipe:
            count = pipe.incr(key).expire(key, WINDOW_SECONDS + 5).execute()[0]
    except redis.RedisError as exc:
        log.warning("rate limit not checked (Redis unavailable): %s", exc)
        return {}
    headers = _headers(limit, limit - count, reset)
    if count > limit:
        raise ApiError("rate_limited", f"more than {limit} requests in a minute; retry in {reset} s",
                       headers={**headers, "Retry-After": str(reset)}, limit=limit)
    return headers


def check_active(session, tenant: Tenant, settings: Settings) -> int:
    """429 when the tenant's other jobs are at its active-job limit; returns their count (the new job's fair
    priority uses it). Called in the transaction that adds the job, after ``jobs.lock_tenant`` and the insert, so
    concurrent submits cannot all pass on the same count."""
    active = jobs.active_jobs(session, tenant.name) - 1  # the new job is in the count already
    _refuse_past_limit(active, tenant, settings)
    return active


def precheck_active(svc: Services, tenant: Tenant) -> None:
    """The same refusal before the job is charged and its input stored, on an unlocked count: a submit that was
    to be refused for its active jobs first held its megapixels through the upload (another submit meanwhile was
    refused ``quota_exceeded`` until midnight) and stored its whole input for nothing. Concurrent submits may all
    pass here; ``check_active`` decides. A database that does not answer is left to that check (and its 503)."""
    if active_limit(tenant, svc.settings) <= 0:
        return
    try:
        with svc.sessions() as session:
            active = jobs.active_jobs(session, tenant.name)
    except SQLAlchemyError:
        return
    _refuse_past_limit(active, tenant, svc.settings)


def _refuse_past_limit(active: int, tenant: Tenant, settings: Settings) -> None:
    limit = active_limit(tenant, settings)
    if 0 < limit <= active:
        raise ApiError("too_many_active_jobs", f"{active} jobs are queued or running, the limit is {limit}; submit "
                                               "more when some have finished", headers={"Retry-After": "10"},
                       limit=limit)


def reserve_megapixels(client: redis.Redis, tenant: Tenant, settings: Settings, megapixels: float) -> datetime | None:
    """Count a job's output megapixels against today's quota (``shared.quota``); 429 if it would go past it.
    Returns when it was counted (for the job's record), None if it was not (no quota, Redis unreachable)."""
    try:
        return quota.charge(client, tenant.name, quota.daily_limit(tenant, settings), megapixels)
    except quota.LargerThanQuota as exc:  # no Retry-After: waiting never helps
        raise ApiError("output_too_large", str(exc), limit=exc.limit) from None
    except quota.QuotaExceeded as exc:
        raise ApiError("quota_exceeded", str(exc), headers={"Retry-After": str(exc.retry_after)},
                       limit=exc.limit) from None
    except redis.RedisError as exc:
        log.warning("daily quota not checked (Redis unavailable): %s", exc)
        return None


def install_rate_limit(app: Flask) -> None:
    """Rate-limit every authenticated ``/v1`` request and put the RateLimit headers on its answer."""

    @app.before_request
    def _rate() -> None:
        tenant = g.get("tenant")
        if tenant is not None:
            svc = services()
            g.rate_headers = check_rate(svc.redis, tenant, svc.settings)

    @app.after_request
    def _headers_on(response: Response) -> Response:
        for name, value in g.get("rate_headers", {}).items():
            response.headers.setdefault(name, value)
        return response
