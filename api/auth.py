"""API keys: when ``UPSCALER_API_KEYS`` is set, every ``/v1`` call needs ``Authorization: Bearer <key>``.

Exempt: the web page and the OpenAPI document (public descriptions), health and metrics (protect them at the
network edge), and signed file links (the signature is the credential). Keys are compared in constant time.
With no keys configured the API is open, which suits one machine on loopback (the dev default).
"""

from __future__ import annotations

import hmac

from flask import Flask, request

from api.errors import ApiError

PUBLIC_ENDPOINTS = {"page.index", "meta.openapi_json", "health.healthz", "health.readyz", "metrics.metrics",
                    "files.download"}


def require_api_key(app: Flask, keys: list[str]) -> None:
    if not keys:
        return
    encoded = [k.encode() for k in keys]

    @app.before_request
    def _check() -> None:
        if request.endpoint in PUBLIC_ENDPOINTS or request.endpoint is None:
            return
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not any(hmac.compare_digest(token.strip().encode(), k) for k in encoded):
            raise ApiError("unauthorized", "send a valid API key as 'Authorization: Bearer <key>'",
                           headers={"WWW-Authenticate": 'Bearer realm="upscaler"'})
