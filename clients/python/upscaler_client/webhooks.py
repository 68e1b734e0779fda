"""Verify a webhook the Standard Webhooks way (HMAC-SHA256 over ``id.timestamp.body``), with no dependency."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping

TOLERANCE_SECONDS = 300
SECRET_PREFIX = "whsec_"  # as shared.signing.WEBHOOK_SECRET_PREFIX: the SDK imports nothing of the server
MIN_KEY_BYTES = 16  # the platform refuses shorter keys (shared.settings)


class WebhookVerificationError(Exception):
    """The signature, timestamp or headers are not valid: do not trust the body."""


def verify_webhook(secret: str | None, headers: Mapping[str, str], body: bytes | str,
                   tolerance: int = TOLERANCE_SECONDS) -> None:
    """Raise ``WebhookVerificationError`` unless ``body`` was signed with ``secret`` (``whsec_...``) recently.

    A secret that cannot be one (unset: None, empty, not ``whsec_<base64>``, too short) is the receiver's own
    configuration error: ``ValueError``, whatever the request (it was an AttributeError for None, and a stale
    request hid it behind an ordinary rejection). Whitespace around it (the newline of a file it was read from) is
    no part of it."""
    key = _key(secret)
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        message_id, timestamp, signatures = lower["webhook-id"], lower["webhook-timestamp"], lower["webhook-signature"]
        sent = int(timestamp)
    except (KeyError, ValueError) as exc:
        raise WebhookVerificationError("missing or malformed webhook-* headers") from exc
    # in whole seconds, as integers: a float of a 400-digit header raised OverflowError (a crash, not a rejection)
    if abs(int(time.time()) - sent) > tolerance:
        raise WebhookVerificationError("timestamp too old or in the future")
    # over the raw bytes: a body that is not UTF-8 simply does not match (a forged request is never a crash)
    raw = body if isinstance(body, bytes) else body.encode()
    expected = base64.b64encode(hmac.new(key, f"{message_id}.{timestamp}.".encode() + raw,
                                         hashlib.sha256).digest())
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return
    raise WebhookVerificationError("no matching signature")


def _key(secret: str | None) -> bytes:
    """The HMAC key in ``secret``, read as the platform's signer reads it (``shared.signing.webhook_key``): the
    ``whsec_`` prefix is required, the base64 after it strict."""
    secret = secret.strip() if isinstance(secret, str) else None
    if not secret:
        raise ValueError("no webhook secret given (is its environment variable set?)")
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("the webhook secret is not of the form whsec_<base64>")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError as exc:  # the receiver's configuration, not the sender's fault: say so
        raise ValueError("the webhook secret is not of the form whsec_<base64>") from exc
    if len(key) < MIN_KEY_BYTES:  # an unset secret ("") would accept anything signed with an empty key
        raise ValueError(f"the webhook secret's key is {len(key)} bytes; a platform secret has {MIN_KEY_BYTES}+")
    return key
