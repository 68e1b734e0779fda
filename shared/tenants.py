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

from shared.models import PUBLIC_TENANT, ApiKey, utcnow

KEY_PREFIX = "upk_"
LAST_USED_RESOLUTION = timedelta(minutes=1)  # at most one write per key and minute


class KeyExists(ValueError):
    """A key with this name already exists (and is not revoked)."""


class InvalidKeyName(ValueError):
    """A name that cannot be a tenant's (the message says why)."""


MAX_NAME_LENGTH = 64  # the tenant columns' width
# the most a key's limit can be: its columns are 32-bit integers (PostgreSQL's INTEGER), and a larger one passed the
# command line and failed the insert with a traceback (integer out of range; SQLite's past 2**63 likewise)
MAX_LIMIT = 2**31 - 1


def check_name(name: str) -> None:
    """Refuse names that would share or take over another tenant's jobs: the open development API's tenant,
    the bootstrap keys' ``env-...`` tenants, and names past the column's width; and names with a ``/``, which
    separates a name from its rotation version in the webhook secret's derivation (``shared.webhooks``): tenant
    ``acme/v1`` would have been given ``acme``'s secret after its first rotation. A space at either end made a
    second tenant (``acme ``) that ``keys list`` shows as ``acme``, which ``keys revoke acme`` does not touch."""
    if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable() or "/" in name or name != name.strip():
        raise InvalidKeyName(f"a key name is 1..{MAX_NAME_LENGTH} printable characters other than '/', with no space "
                             "at either end")
    if name == PUBLIC_TENANT or name.startswith("env-"):
        raise InvalidKeyName(f"{name!r} is reserved (the open development API's tenant, or a bootstrap key's)")


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Tenant:
    """The authenticated caller: its tenant name and its limits (None = the deployment's defaults)."""

    name: str
    rate_limit: int | None = None
    max_active: int | None = None
    daily_megapixels: int | None = None


def own_or_default(own: int | None, default: int) -> int:
    """A limit a key carries, or the deployment's when it carries none (0 means unlimited either way)."""
    return default if own is None else own


def env_tenant(token: str) -> str:
    return f"env-{hash_key(token)[:12]}"


def _new_secret(row: ApiKey) -> str:
    """A new secret on ``row`` (only its hash and prefix are kept); the key has not been used since."""
    token = KEY_PREFIX + secrets.token_urlsafe(32)
    row.prefix, row.key_hash, row.last_used_at = token[:12], hash_key(token), None
    return token


def create_key(session: Session, name: str, rate_limit: int | None = None, max_active: int | None = None,
               daily_megapixels: int | None = None) -> tuple[ApiKey, str]:
    """A new key for tenant ``name``; returns the row and the secret (the only time it exists in clear).

    A revoked tenant gets a new key on its own row: its jobs stay its own (limits not given stay as they were).
    """
    check_name(name)
    row = session.scalar(select(ApiKey).where(ApiKey.name == name))
    if row is not None and row.revoked_at is None:
        raise KeyExists(name)
    if row is None:
        row = ApiKey(name=name, rate_limit=rate_limit, max_active=max_active, daily_megapixels=daily_megapixels)
        session.add(row)
    else:
        # a revoked tenant made again: the limits asked for now, as for a new one (an omitted one is the setting;
        # the old key's limits stayed on silently, though --help says "default: the setting")
        row.revoked_at, row.created_at = None, utcnow()
        row.rate_limit, row.max_active, row.daily_megapixels = rate_limit, max_active, daily_megapixels
    token = _new_secret(row)
    session.flush()
    return row, token


def rotate_key(session: Session, name: str) -> tuple[ApiKey, str] | None:
    """A new secret for tenant ``name``'s active key (the old one stops working at once); None if it has none."""
    row = session.scalar(select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None)))
    if row is None:
        return None
    token = _new_secret(row)
    session.flush()
    return row, token


UNCHANGED = object()  # ``set_limits``: leave this limit as it is (None sets it back to the deployment's default)


def set_limits(session: Session, name: str, rate_limit=UNCHANGED, max_active=UNCHANGED,
               daily_megapixels=UNCHANGED) -> ApiKey | None:
    """Change the limits tenant ``name``'s active key carries, keeping its secret (a customer's new plan took
    ``revoke`` + ``create``: a new key to hand over, and 401s for every client until it was swapped in). Each
    limit: an int (0: unlimited), None (the deployment's default) or ``UNCHANGED``. None if it has no active key.
    The next request of the key reads them (``authenticate``)."""
    row = session.scalar(select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None)))
    if row is None:
        return None
    for field, value in (("rate_limit", rate_limit), ("max_active", max_active),
                         ("daily_megapixels", daily_megapixels)):
        if value is not UNCHANGED:
            setattr(row, field, value)
    session.flush()
    return row


def revoke_key(session: Session, name: str) -> bool:
    result = session.execute(update(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
                             .values(revoked_at=utcnow()))
    return result.rowcount == 1


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


def any_key(session: Session) -> bool:
    """Whether a key was ever created: from then on the development API stays closed (revoking every key does not
    open it again to key-less calls)."""
    return session.scalar(select(ApiKey.id).limit(1)) is not None


def authenticate(session: Session, token: str, env_keys: list[str]) -> Tenant | None:
    """The tenant of a bearer token, or None. Environment keys are compared in constant time."""
    env_key, row = _key_of(session, token, env_keys)
    if env_key is not None:
        return Tenant(env_tenant(env_key))
    if row is None:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
    return _tenant(row)


def still_valid(session: Session, token: str, env_keys: list[str]) -> bool:
    """Whether a token that authenticated a request is still a key (not revoked or rotated meanwhile), without
    marking it used: asked again before a long request answers."""
    env_key, row = _key_of(session, token, env_keys)
    return env_key is not None or row is not None


def _key_of(session: Session, token: str, env_keys: list[str]) -> tuple[str | None, ApiKey | None]:
    """The bootstrap key ``token`` is (compared in constant time), else its active key row; (None, None) if
    neither."""
    for key in env_keys:
        if hmac.compare_digest(token.encode(), key.encode()):
            return key, None
    return None, session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(token), ApiKey.revoked_at.is_(None)))


def tenant_named(session: Session, name: str) -> Tenant:
    """Tenant ``name`` with the limits its key carries (revoked or not: its jobs still run), or the deployment's
    defaults for a tenant without a row (the open API's, a bootstrap key's)."""
    row = session.scalar(select(ApiKey).where(ApiKey.name == name))
    return Tenant(name) if row is None else _tenant(row)


def _tenant(row: ApiKey) -> Tenant:
    return Tenant(row.name, row.rate_limit, row.max_active, row.daily_megapixels)
