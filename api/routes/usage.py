"""``/v1/usage``: what the caller has used of its limits, so a client can pace itself before a 429."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import redis
from flask import Blueprint, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError

from api.auth import current_tenant
from api.errors import ApiError
from api.openapi import operation
from api.quotas import active_limit, rate_limit
from api.routes.webhooks import NO_STORE
from api.schemas import Problem
from api.services import services
from shared import jobs, quota

log = logging.getLogger(__name__)
blueprint = Blueprint("usage", __name__, url_prefix="/v1/usage")


class RequestUsage(BaseModel):
    limit_per_minute: int | None = Field(description="Requests a minute; null: unlimited. The `RateLimit` header of "
                                                     "every /v1 answer (this one too) says what is left and when "
                                                     "the minute ends.")


class ActiveJobUsage(BaseModel):
    queued: int
    running: int
    limit: int | None = Field(description="Queued and running jobs at once; null: unlimited. At the limit a "
                                          "submit is 429 `too_many_active_jobs`.")


class DailyUsage(BaseModel):
    used_megapixels: float | None = Field(description="Output megapixels charged today (UTC): an upload's at "
                                                      "submit, a job by image_url's once its image is fetched, less "
                                                      "what failed jobs gave back; null while Redis is unreachable "
                                                      "(the count is kept there)")
    limit_megapixels: int | None = Field(description="Output megapixels a UTC day; null: unlimited")
    remaining_megapixels: float | None = Field(description="What a job's output may still take today; null when "
                                                           "unlimited or not known")
    resets_at: datetime = Field(description="The next 00:00 UTC, when the count starts again")


class Usage(BaseModel):
    tenant: str
    requests: RequestUsage
    active_jobs: ActiveJobUsage
    daily: DailyUsage


@blueprint.get("")
@operation("The caller's limits and what it has used of them now (its key's own limits, else the deployment's)",
           {200: ("Limits and use", Usage),
            503: ("The database unavailable: nothing to count active jobs with; retry", Problem)}, tag="usage",
           headers=NO_STORE)  # said in the document too: a client generated from it dropped what it left out
def get_usage():
    svc, tenant = services(), current_tenant()
    settings = svc.settings
    try:
        with svc.sessions() as session:
            active = jobs.active_by_status(session, tenant.name)
    except SQLAlchemyError as exc:
        log.error("database unavailable counting active jobs: %s", exc)
        raise ApiError("service_unavailable", "the database is unavailable; retry later",
                       headers={"Retry-After": "10"}) from exc
    daily_limit, now = quota.daily_limit(tenant, settings), datetime.now(UTC)
    try:
        used = quota.used_today(svc.redis, tenant.name, now)
    except redis.RedisError as exc:
        log.warning("daily use not read (Redis unavailable): %s", exc)
        used = None
    body = Usage(
        tenant=tenant.name,
        requests=RequestUsage(limit_per_minute=_limit(rate_limit(tenant, settings))),
        active_jobs=ActiveJobUsage(**active, limit=_limit(active_limit(tenant, settings))),
        daily=DailyUsage(used_megapixels=None if used is None else round(used, 6),
                         limit_megapixels=_limit(daily_limit),
                         remaining_megapixels=None if used is None or daily_limit <= 0
                         else round(max(daily_limit - used, 0.0), 6),
                         resets_at=quota.resets_at(now)))
    return Response(body.model_dump_json(), mimetype="application/json", headers=NO_STORE)


def _limit(value: int) -> int | None:
    """A limit as the API says it: 0 (the settings' "unlimited") is null."""
    return value if value > 0 else None
