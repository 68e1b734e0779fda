"""Signed, expiring links for objects the API serves itself (the local storage backend), and the key inside a
webhook signing secret (read where settings are checked and where deliveries are signed)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

WEBHOOK_SECRET_PREFIX = "whsec_"


def webhook_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret (``whsec_<base64>``); ValueError when it is not one."""
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    return base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX), validate=True)  # binascii.Error: ValueError


def sign(secret: str, key: str, expires_at: int, name: str = "") -> str:
    return _hmac(secret, f"{key}\n{expires_at}\n{name}")


def _hmac(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


# Links signed before the name was (2026-11-28) stay good until they expire: a webhook's message carries its link
# unchanged through ten hours of retries, and an upgrade must not turn every outstanding download into a 403.
# None was signed for longer than a week after that day (the longest a webhook's link lives, well within it).
LEGACY_LINKS_EXPIRE_BY = 1796601600  # 2026-12-07 00:00 UTC


def signed_query(secret: str, key: str, ttl: int, now: float | None = None, name: str = "") -> dict[str, str]:
    """Query parameters (``expires``, ``signature``, and ``name`` if given) granting access to ``key`` for ``ttl``
    seconds, downloaded under ``name``. The name is signed too, as S3 signs a presigned link's
    ``response-content-disposition``: a link's holder could otherwise hand it on saving as any name."""
    expires_at = int((time.time() if now is None else now) + ttl)
    query = {"expires": str(expires_at), "signature": sign(secret, key, expires_at, name)}
    return {**query, "name": name} if name else query


def verify(secret: str, key: str, expires: str, signature: str, now: float | None = None,
           name: str | None = None) -> str | None:
    """None when valid, else the reason: ``invalid_signature`` or ``link_expired``."""
    try:
        expires_at = int(expires)
    except (TypeError, ValueError):
        return "invalid_signature"
    # compared as bytes: compare_digest refuses non-ASCII str, and a forged link must not be a 500
    given = (signature or "").encode()
    legacy = expires_at < LEGACY_LINKS_EXPIRE_BY and hmac.compare_digest(_hmac(secret, f"{key}\n{expires_at}").encode(),
                                                                        given)
    if not hmac.compare_digest(sign(secret, key, expires_at, name or "").encode(), given) and not legacy:
        return "invalid_signature"
    if (time.time() if now is None else now) > expires_at:
        return "link_expired"
    return None
