"""Webhook delivery rows: claim, record attempts, find due ones. They flush; callers commit."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from shared.models import Job, WebhookAttempt, WebhookDelivery, utcnow

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


def _due(delivery_id: str, now: datetime):
    """The message is pending and its next attempt's time has come (``claim`` takes it, ``defer`` puts it off)."""
    return and_(WebhookDelivery.id == delivery_id, WebhookDelivery.status == PENDING,
                or_(WebhookDelivery.next_attempt_at.is_(None), WebhookDelivery.next_attempt_at <= now))


def claim(session: Session, delivery_id: str, lease_seconds: float) -> bool:
    """Take a due, pending delivery for one attempt (pushing ``next_attempt_at`` out as a lease)."""
    now = utcnow()
    result = session.execute(
        update(WebhookDelivery)
        .where(_due(delivery_id, now))
        .values(attempts=WebhookDelivery.attempts + 1, next_attempt_at=now + timedelta(seconds=lease_seconds),
                leased_until=now + timedelta(seconds=lease_seconds), updated_at=now)
    )
    return result.rowcount == 1


def tenant_of(session: Session, delivery_id: str) -> str | None:
    """The tenant whose job the message is of; None for a message that is not there."""
    return session.scalar(select(Job.tenant).join(WebhookDelivery, WebhookDelivery.job_id == Job.id)
                          .where(WebhookDelivery.id == delivery_id))


def tenant_busy(session: Session, delivery_id: str, tenant: str, most: int) -> bool:
    """Whether the message's ``tenant`` already has ``most`` attempts being made (0: no cap). Why: one queue and a few
    slots serve every tenant's messages, and a receiver that never answers holds a slot for the whole timeout per
    attempt, so one customer's dead endpoint during a bulk run delayed every other customer's webhooks by hours.
    Counted without a lock: concurrent claims may pass it together, by at most the webhook workers' slots."""
    if most <= 0:
        return False
    # the attempts being made anywhere (a handful, from ix_webhook_deliveries_leased), then which are this tenant's:
    # joined from the tenant's side, SQLite's planner walked every job the tenant ever had (0.2 s at 300k jobs)
    in_flight_jobs = list(session.scalars(
        select(WebhookDelivery.job_id).where(WebhookDelivery.leased_until.is_not(None),  # every recorded attempt
                                             WebhookDelivery.leased_until > utcnow(),  # clears it (no status term:
                                             WebhookDelivery.id != delivery_id)))  # the planner took the due index)
    if len(in_flight_jobs) < most:
        return False
    theirs = set(session.scalars(select(Job.id).where(Job.id.in_(set(in_flight_jobs)), Job.tenant == tenant)))
    return sum(job_id in theirs for job_id in in_flight_jobs) >= most


def defer(session: Session, delivery_id: str, seconds: float) -> bool:
    """Push a due message's next attempt ``seconds`` out, counting no attempt (its tenant's slots are busy); False
    if it is not due, or not pending, any more."""
    now = utcnow()
    result = session.execute(
        update(WebhookDelivery)
        .where(_due(delivery_id, now))
        .values(next_attempt_at=now + timedelta(seconds=seconds), updated_at=now)
    )
    return result.rowcount == 1


JITTER = 0.2  # each retry's delay is its scheduled one, +-20 %


def record_attempt(session: Session, delivery: WebhookDelivery, status_code: int | None, latency_ms: float | None,
                   error: str | None, retry_delays: tuple[float, ...], rng: random.Random | None = None
                   ) -> float | None:
    """Store the attempt and the delivery's new state; returns the delay before a retry, or None."""
    session.add(WebhookAttempt(delivery_id=delivery.id, status_code=status_code, latency_ms=latency_ms,
                               error=error[:2000] if error else None))
    now = utcnow()
    delivery.updated_at, delivery.leased_until = now, None
    if status_code is not None and 200 <= status_code < 300:
        delivery.status, delivery.next_attempt_at = DELIVERED, None
        return None
    if delivery.status == DELIVERED:  # another attempt (a lease ran out meanwhile) got it through: it stays so
        return None
    # counted from the redelivery, if any (its fresh budget); at least 0, as a stored count from before may say
    retries_done = max(delivery.attempts - delivery.retries_from - 1, 0)
    if status_code == 410 or (error and error.startswith("refused:")) or retries_done >= len(retry_delays):
        delivery.status, delivery.next_attempt_at = FAILED, None
        return None
    # Exponential schedule from settings, with jitter so a recovering receiver is not stampeded.
    delay = retry_delays[retries_done] * (rng or random).uniform(1 - JITTER, 1 + JITTER)
    delivery.next_attempt_at = now + timedelta(seconds=delay)
    return delay


def take_due(session: Session, grace_seconds: float, limit: int = 500) -> list[str]:
    """Pending deliveries whose time came at least ``grace_seconds`` ago (their own publish may be late)
    and that the sweeper has not re-published within that time; marks them re-published now, so a
    backlog with no webhook worker does not grow by one message per sweep."""
    now = utcnow()
    cutoff = now - timedelta(seconds=grace_seconds)
    query = (select(WebhookDelivery.id)
             .where(and_(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= cutoff,
                         WebhookDelivery.updated_at <= cutoff))
             .order_by(WebhookDelivery.next_attempt_at).limit(limit))
    ids = list(session.scalars(query))
    if ids:
        session.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(ids)).values(updated_at=now))
    return ids


def for_job(session: Session, job_id: str) -> list[tuple[WebhookDelivery, list[WebhookAttempt]]]:
    deliveries = session.scalars(select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
                                 .order_by(WebhookDelivery.created_at, WebhookDelivery.id)).all()
    attempts = session.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_([d.id for d in deliveries]))
                               .order_by(WebhookAttempt.id)).all()
    by_delivery: dict[str, list[WebhookAttempt]] = {}
    for attempt in attempts:
        by_delivery.setdefault(attempt.delivery_id, []).append(attempt)
    return [(d, by_delivery.get(d.id, [])) for d in deliveries]


class InFlight(Exception):
    """An attempt at the message is being made now: sending it again meanwhile would POST it twice at once."""


def reopen(session: Session, delivery: WebhookDelivery) -> None:
    """Send a message again (manual redelivery): pending now, with a fresh retry budget counted from the attempts
    it has (the count stays, beside its attempt log). Raises ``InFlight`` while an attempt is being made.

    One conditional UPDATE, not a read then a write: a worker claiming the message between the two had its lease
    overwritten, and the redelivery's task POSTed the message a second time while the first attempt ran."""
    now = utcnow()
    result = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery.id,
               or_(WebhookDelivery.status != PENDING, WebhookDelivery.leased_until.is_(None),
                   WebhookDelivery.leased_until <= now))
        .values(status=PENDING, next_attempt_at=now, retries_from=WebhookDelivery.attempts, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    session.refresh(delivery)
    if result.rowcount != 1:
        raise InFlight(delivery.id)
