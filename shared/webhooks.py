"""Webhooks the Standard Webhooks way: events, signatures, destination checks and the outbox.

An event is recorded as a ``WebhookDelivery`` row in the same transaction as the job change that
caused it (outbox pattern), then published to the ``webhooks`` queue; if publishing is lost, the
sweeper publishes due deliveries again. Receivers verify ``webhook-signature`` with the ``whsec_``
secret (see docs/webhooks.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.deliveries import JITTER
from shared.events import wanted_events
from shared.job_view import job_view
from shared.models import ApiKey, Job, WebhookDelivery, utcnow
from shared.pinned_http import RefusedDestination, ResolveTimedOut, pin
from shared.settings import Settings
from shared.signing import WEBHOOK_SECRET_PREFIX, webhook_key
from shared.storage import Storage


def signing_secret(settings: Settings, tenant: str, version: int = 0) -> str:
    """The ``whsec_`` secret that ``tenant``'s receivers verify its messages with (at a rotation ``version``).

    Each tenant has its own: with one secret for the whole deployment, any customer could sign a message that
    another customer's receiver would accept (a forged ``job.succeeded`` pointing at any file). The deployment
    secret (``UPSCALER_WEBHOOK_SECRET``, else derived from ``UPSCALER_SECRET_KEY``, stable across restarts) is no
    tenant's: every tenant's, the open development API's too, is an HMAC of its name (and, once rotated, its
    version: ``rotate_secret``) under it, so nothing secret is stored, a worker needs only the job's tenant, and
    changing the deployment secret rotates them all. (It was the open API's tenant's own: anyone who read that one
    from the open API could compute every later customer's.) Version 0 is the derivation of before rotation
    existed, so no receiver had to change; ``/v<N>`` after the name is unambiguous because no key name holds a
    ``/`` (``shared.tenants.check_name``)."""
    if settings.webhook_secret:
        deployment = webhook_key(settings.webhook_secret)
    else:
        deployment = hmac.new(settings.secret_key.encode(), b"upscaler-webhooks", hashlib.sha256).digest()
    named = b"upscaler-webhooks/tenant/" + tenant.encode() + (f"/v{version}".encode() if version else b"")
    key = hmac.new(deployment, named, hashlib.sha256).digest()
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(key).decode()


DEFAULT_ROTATION_GRACE = timedelta(hours=24)  # the previous secret signs too, so receivers switch without a gap
MAX_ROTATION_GRACE = timedelta(days=365)  # a longer one is a leaked secret that never stops signing


@dataclass(frozen=True)
class TenantSecrets:
    """A tenant's webhook secret now, and the previous one while it still signs (after a rotation)."""

    current: str
    previous: str | None = None
    previous_until: datetime | None = None

    @property
    def signing(self) -> list[str]:
        """Every secret a message is signed with: a receiver holding either verifies it."""
        return [self.current, *([self.previous] if self.previous else [])]


def tenant_secrets(session: Session, settings: Settings, tenant: str) -> TenantSecrets:
    """``tenant``'s secrets as its key row has them (tenants with no row, the open API's and the bootstrap keys',
    stay at version 0)."""
    row = session.scalar(select(ApiKey).where(ApiKey.name == tenant))
    version = row.webhook_secret_version if row else 0
    until = row.webhook_secret_previous_until if row else None
    if version and until and until > utcnow():
        return TenantSecrets(signing_secret(settings, tenant, version), signing_secret(settings, tenant, version - 1),
                             until)
    return TenantSecrets(signing_secret(settings, tenant, version))


def rotate_secret(session: Session, settings: Settings, tenant: str,
                  grace: timedelta = DEFAULT_ROTATION_GRACE) -> TenantSecrets | None:
    """A new webhook secret for ``tenant`` (None for a tenant with no key row); the one it replaces goes on signing
    for ``grace`` (each message carrying both signatures), and one before that stops at once. For a secret read by
    someone who should not have it (a leaked API key could read ``GET /v1/webhooks/secret``), which rotating the
    key alone did not change. ``grace`` is 0 to ``MAX_ROTATION_GRACE``."""
    if not timedelta(0) <= grace <= MAX_ROTATION_GRACE:
        raise ValueError(f"a rotation's grace is 0 to {MAX_ROTATION_GRACE}, not {grace}")
    row = session.scalar(select(ApiKey).where(ApiKey.name == tenant))
    if row is None:
        return None
    row.webhook_secret_version += 1
    row.webhook_secret_previous_until = utcnow() + grace if grace > timedelta(0) else None
    session.flush()
    return tenant_secrets(session, settings, tenant)


def sign(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """One signature of the ``webhook-signature`` header: ``v1,<base64 HMAC-SHA256 of id.timestamp.body>``."""
    key = webhook_key(secret)
    digest = hmac.new(key, f"{message_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secrets: str | Sequence[str], message_id: str, body: str,
                   timestamp: int | None = None) -> dict[str, str]:
    """The Standard Webhooks headers; with several secrets (a rotation's grace) one signature each, space
    separated, as the specification lets a receiver accept any of them."""
    timestamp = int(datetime.now(UTC).timestamp()) if timestamp is None else timestamp
    signatures = " ".join(sign(secret, message_id, timestamp, body)
                          for secret in ([secrets] if isinstance(secrets, str) else secrets))
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp), "webhook-signature": signatures,
            "content-type": "application/json", "user-agent": "upscaler-webhooks/1"}


# A submit's look at a URL is a courtesy (the worker checks again, and connects only to what it checked): it takes
# at most this long, so a customer's stalling name server cannot hold the API's threads for RESOLVE_SECONDS each.
SUBMIT_RESOLVE_SECONDS = 2.0


def refused_destination(url: str, allow_private: bool, resolve_seconds: float = SUBMIT_RESOLVE_SECONDS) -> str | None:
    """Why ``url`` may not receive webhooks or be fetched (SSRF guard), or None when it may.

    Only http(s), no user name or password, a port; every address the host resolves to must be public unless
    ``allow_private``: loopback, private, link-local (cloud metadata lives there), multicast, reserved and
    unspecified addresses are refused. Checked at submit, where a lookup with no answer within ``resolve_seconds``
    is let through; each delivery and fetch checks again and connects to exactly the addresses it checked
    (``shared.pinned_http``), since DNS can change between the two.
    """
    try:
        pin(url, allow_private, resolve_seconds)
    except ResolveTimedOut:
        return None
    except RefusedDestination as exc:
        return str(exc)
    return None


def payload_link_ttl(settings: Settings) -> int:
    """How long a payload's ``result_url`` lives: the payload is signed once and every retry resends it as is,
    so its link outlives the last retry by ``result_url_ttl`` (a receiver answering late still downloads)."""
    return settings.result_url_ttl + int(sum(settings.webhook_retry_delays) * (1 + JITTER))


def record_event(session: Session, job: Job, event: str, storage: Storage, settings: Settings) -> str | None:
    """Add the delivery row for ``event`` if the job asked for it; returns its id (publish after commit)."""
    if not job.webhook_url or event not in wanted_events(job):
        return None
    now = utcnow()
    data = job_view(job, storage, settings, settings.public_url, link_ttl=payload_link_ttl(settings)).model_dump(
        mode="json")
    payload = json.dumps({"type": event, "timestamp": now.isoformat().replace("+00:00", "Z"), "data": data},
                         separators=(",", ":"))
    delivery = WebhookDelivery(id="msg_" + secrets.token_hex(16), job_id=job.id, event=event, url=job.webhook_url,
                               payload=payload, status="pending", attempts=0, next_attempt_at=now)
    session.add(delivery)
    session.flush()
    return delivery.id
