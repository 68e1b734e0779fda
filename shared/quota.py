"""The daily output-megapixel quota: counted in Redis per tenant and UTC day, charged from two sides.

The API charges a job when it is submitted with its image (its output size is known then); the worker charges a
job submitted by ``image_url`` once it has fetched the image and knows its size (such jobs cost nothing at
submit, and went uncharged: a tenant could get any number of megapixels by hosting its images). One count, one
rule for both.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import redis

from shared.settings import Settings
from shared.tenants import Tenant, own_or_default

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


def charge(client: redis.Redis, tenant: str, limit: int, megapixels: float) -> None:
    """Add ``megapixels`` to the tenant's count for today (a negative amount gives some back); raise
    ``QuotaExceeded``, with the count as it was, if the charge would pass ``limit`` (<= 0: nothing counted), or
    ``LargerThanQuota`` if it alone is more than ``limit``.
    Raises ``redis.RedisError`` when Redis is unreachable: each caller decides what that means."""
    if limit <= 0:
        return
    if megapixels > limit:  # "retry at midnight" would be a lie: it never fits
        raise LargerThanQuota(f"this job ({megapixels:.1f} output megapixels) is larger than the whole daily quota "
                              f"of {limit} megapixels; ask for a smaller size", limit)
    now = datetime.now(UTC)
    key = _day_key(tenant, now)
    with client.pipeline() as pipe:  # the expiry with the count: a refused first charge of a day left no TTL
        used = float(pipe.incrbyfloat(key, megapixels).expire(key, KEY_TTL_SECONDS).execute()[0])
    if megapixels > 0 and used > limit:
        client.incrbyfloat(key, -megapixels)
        midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
        raise QuotaExceeded(f"this job ({megapixels:.1f} output megapixels) would pass today's quota of {limit} "
                            f"megapixels ({used - megapixels:.1f} used); it resets at 00:00 UTC",
                            int((midnight - now).total_seconds()) + 1, limit)


def give_back(client: redis.Redis, tenant: str, megapixels: float, charged_at: datetime) -> None:
    """Return a charge to the day it was made on (a queued job canceled before it ran made nothing: its upload's
    charge stood for the rest of the day). A day whose count has expired is left alone. Raises
    ``redis.RedisError`` when Redis is unreachable."""
    key = _day_key(tenant, charged_at)
    if megapixels > 0 and client.exists(key):
        client.incrbyfloat(key, -megapixels)


def _day_key(tenant: str, moment: datetime) -> str:
    return f"upscaler:mp:{tenant}:{moment.astimezone(UTC):%Y%m%d}"
