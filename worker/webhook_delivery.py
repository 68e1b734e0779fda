"""One attempt at delivering a webhook message: claim, check the destination, POST, record, schedule retry."""

from __future__ import annotations

import http.client
import logging
import random
import time
from urllib.parse import urlsplit, urlunsplit

from celery import Celery

from shared import deliveries, metrics
from shared.db import unit_of_work
from shared.logs import job_context
from shared.models import WebhookDelivery
from shared.pinned_http import NotResolved, RefusedDestination, post_within
from shared.queue import enqueue_delivery
from shared.webhooks import signed_headers, tenant_secrets
from worker.context import WorkerContext

log = logging.getLogger(__name__)
PUBLISH_RETRY_BELOW_SECONDS = 60.0  # longer waits are left to the sweeper, not to broker ETA messages
DEFER_SECONDS = 5.0  # a message whose tenant's attempts are at their cap waits about this long (+-50 %)


def shown(url: str) -> str:
    """``url`` for a log line: its query (a receiver's token often rides there) and any credentials left out."""
    parts = urlsplit(url)
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "…" if parts.query else "", ""))


def deliver(ctx: WorkerContext, celery: Celery, delivery_id: str) -> str:
    """Returns delivered, retrying, failed, deferred (its tenant's attempts in flight are at their cap: tried again
    a few seconds later, no attempt counted) or skipped (not due, or already being delivered)."""
    settings = ctx.settings
    with unit_of_work(ctx.sessions) as session:
        tenant = deliveries.tenant_of(session, delivery_id)
        if tenant is None:
            return "skipped"
        busy = deliveries.tenant_busy(session, delivery_id, tenant, settings.webhook_tenant_concurrency)
        if busy and not deliveries.defer(session, delivery_id, DEFER_SECONDS * random.uniform(0.5, 1.5)):
            return "skipped"
        if not busy and not deliveries.claim(session, delivery_id, settings.webhook_timeout + 30):
            return "skipped"
    if busy:
        metrics.WEBHOOK_DELIVERIES.labels("deferred").inc()
        _publish_later(celery, delivery_id, DEFER_SECONDS * 1.5)
        return "deferred"
    with ctx.sessions() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        url, payload, job_id = delivery.url, delivery.payload, delivery.job_id
        secrets = tenant_secrets(session, settings, tenant).signing
    with job_context(job_id):  # the attempt's lines carry its job's id, as the job's own lines do
        return _attempt(ctx, celery, delivery_id, url, payload, secrets)


def _attempt(ctx: WorkerContext, celery: Celery, delivery_id: str, url: str, payload: str, secrets) -> str:
    """POST the claimed message, record the attempt, count it and schedule its retry; returns the outcome."""
    settings = ctx.settings
    status_code, latency_ms, error = None, None, None
    started = time.perf_counter()
    try:  # resolved once, checked, and connected to exactly that address (no DNS rebinding), within the timeout
        status_code = post_within(url, payload.encode(),
                                  signed_headers(secrets, delivery_id, payload),
                                  settings.webhook_allow_private, settings.webhook_timeout)
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}" + (" (redirects are not followed)" if 300 <= status_code < 400 else "")
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
    except NotResolved as exc:  # a DNS outage passes: retried, where a policy refusal is final
        error = f"{exc} (retried while attempts remain: not a refusal)"
    except RefusedDestination as exc:
        error = f"refused: {exc}"
    except (OSError, http.client.HTTPException) as exc:  # DeadlinePassed included
        error = f"{type(exc).__name__}: {exc}"
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
    except Exception as exc:  # recorded like any failed attempt: unrecorded, the message was re-sent for ever
        log.exception("webhook %s: the attempt failed unexpectedly", delivery_id)
        error = f"{type(exc).__name__}: {exc}"
    with unit_of_work(ctx.sessions) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        delay = deliveries.record_attempt(session, delivery, status_code, latency_ms, error,
                                          settings.webhook_retry_delays)
        outcome = delivery.status if delay is None else "retrying"
    metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()
    log.info("webhook %s to %s: %s (%s)", delivery_id, shown(url), outcome, error or status_code)
    if delay is not None and delay < PUBLISH_RETRY_BELOW_SECONDS:
        _publish_later(celery, delivery_id, delay)
    return outcome


def _publish_later(celery: Celery, delivery_id: str, countdown: float) -> None:
    try:
        enqueue_delivery(celery, delivery_id, countdown=countdown)
    except Exception:
        log.warning("could not schedule the next attempt of %s; the sweeper will", delivery_id)

