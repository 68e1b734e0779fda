"""API keys as data, and who a request is: one place for creating, finding and revoking keys.

A key is 32 random bytes (``upk_`` + base64url), shown once and stored as its SHA-256: keys are
high-entropy, so a fast hash looked up by equality is safe (as GitHub and Stripe store tokens) and needs no
per-key salt. Keys from ``UPSCALER_API_KEYS`` keep working as a bootstrap; each is its own tenant, named
after its hash so reordering the variable changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.models import ApiKey, utcnow

KEY_PREFIX = "upk_"
LAST_USED_RESOLUTION = timedelta(minutes=1)  # at most one write per key and minute


class KeyExists(ValueError):
    """A key with this name already exists."""


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Tenant:
    """The authenticated caller: its tenant name and its limits (None = the deployment's defaults)."""

    name: str
    rate_limit: int | None = None
    max_active: int | None = None
    daily_megapixels: int | None = None


def env_tenant(token: str) -> str:
    return f"env-{hash_key(token)[:12]}"


def create_key(session: Session, name: str, rate_limit: int | None = None, max_active: int | None = None,
               daily_megapixels: int | None = None) -> tuple[ApiKey, str]:
    """A new key for tenant ``name``; returns the row and the secret (the only time it exists in clear)."""
    if session.scalar(select(ApiKey).where(ApiKey.name == name)) is not None:
        raise KeyExists(name)
    token = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=name, prefix=token[:12], key_hash=hash_key(token), rate_limit=rate_limit,
                 max_active=max_active, daily_megapixels=daily_megapixels)
    session.add(row)
    session.flush()
    return row, token


def revoke_key(session: Session, name: str) -> bool:
    result = session.execute(update(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
                             .values(revoked_at=utcnow()))
    return result.rowcount == 1


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


def any_active_key(session: Session) -> bool:
    return session.scalar(select(ApiKey.id).where(ApiKey.revoked_at.is_(None)).limit(1)) is not None


def authenticate(session: Session, token: str, env_keys: list[str]) -> Tenant | None:
    """The tenant of a bearer token, or None. Environment keys are compared in constant time."""
    for key in env_keys:
        if hmac.compare_digest(token.encode(), key.encode()):
            return Tenant(env_tenant(key))
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(token), ApiKey.revoked_at.is_(None)))
    if row is None:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
    return Tenant(row.name, row.rate_limit, row.max_active, row.daily_megapixels)
