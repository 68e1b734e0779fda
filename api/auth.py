"""Who is calling: every ``/v1`` call carries ``Authorization: Bearer <key>`` and acts as that key's tenant.

Keys are data (``upscaler keys create``, ``shared.tenants``), with ``UPSCALER_API_KEYS`` as a bootstrap.
In production every ``/v1`` call must be authenticated. In development, while no key exists at all, the API
is *open*: calls without a key act as the single ``public`` tenant (the embedded default on one machine; it
says so at start-up). Exempt everywhere: the web page and the OpenAPI document (public descriptions), health
(probes) and signed file links (the signature is the credential).
"""

from __future__ import annotations

import ipaddress
import logging
from urllib.parse import urlsplit

from flask import Flask, g, request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.services import services
from shared.db import unit_of_work
from shared.models import PUBLIC_TENANT
from shared.settings import Settings
from shared.tenants import Tenant, any_key, authenticate, still_valid

PUBLIC_ENDPOINTS = {"page.index", "page.asset", "meta.openapi_json", "health.healthz", "health.readyz",
                    "metrics.metrics", "files.download", "reference.docs_index", "reference.docs_asset",
                    "reference.docs_errors"}
log = logging.getLogger(__name__)


def _unauthorized() -> ApiError:
    return ApiError("unauthorized", "send a valid API key as 'Authorization: Bearer <key>'",
                    headers={"WWW-Authenticate": 'Bearer realm="upscaler"'})


def install_auth(app: Flask, settings: Settings) -> None:
    env_keys = settings.api_key_list
    may_be_open = not settings.production and not env_keys
    if may_be_open:
        log.warning("API is OPEN while no API key exists: calls without a key act as tenant %r. Create one with "
                    "'upscaler keys create --name NAME' (UPSCALER_ENV=production always requires keys).",
                    PUBLIC_TENANT)

    @app.before_request
    def _authenticate() -> None:
        if request.endpoint in PUBLIC_ENDPOINTS or request.endpoint is None:
            return
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        svc = services()
        try:
            with unit_of_work(svc.sessions) as session:
                if scheme.lower() == "bearer" and token.strip():
                    tenant = authenticate(session, token.strip(), env_keys)
                elif may_be_open and addressed_directly(request.host, settings) and not any_key(session):
                    tenant = Tenant(PUBLIC_TENANT)
                else:
                    tenant = None
        except SQLAlchemyError as exc:
            log.error("database unavailable while authenticating: %s", exc)
            raise ApiError("service_unavailable", "the database is unavailable; nothing was done, retry later",
                           headers={"Retry-After": "10"}) from exc
        if tenant is None:
            raise _unauthorized()
        g.tenant = tenant
        g.token = token.strip() if tenant.name != PUBLIC_TENANT else None


def addressed_directly(host: str, settings: Settings) -> bool:
    """Whether a request names this server by an address, ``localhost`` or its public URL's host: the only names
    the open API answers to without a key. A page on another site that rebinds its own name to 127.0.0.1 (DNS
    rebinding) sends that name, passed the same-origin checks, and listed, read and submitted the developer's jobs;
    an IP literal cannot be rebound."""
    name = urlsplit(f"//{host}").hostname or ""
    public = urlsplit(settings.public_url).hostname if settings.public_url else None
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return name == "localhost" or name.endswith(".localhost") or name == public


def require_key_still_valid(session: Session | None = None) -> None:
    """Raise 401 if the request's key was revoked or rotated since the request began: asked before a request
    that took long (a submit's slow upload, a ``Prefer: wait``) stores a job or answers, which carried on as if the
    key were good (and handed out a result link minted after the revocation). ``session``: asked in that
    transaction (the one that stores the job, holding the tenant's lock, which a revocation takes too)."""
    token = g.get("token")
    if not token:
        return
    svc = services()
    try:
        if session is not None:
            valid = still_valid(session, token, svc.settings.api_key_list)
        else:
            with svc.sessions() as own:
                valid = still_valid(own, token, svc.settings.api_key_list)
    except SQLAlchemyError as exc:
        raise ApiError("service_unavailable", "the database is unavailable; retry later",
                       headers={"Retry-After": "10"}) from exc
    if not valid:
        raise _unauthorized()


def current_tenant() -> Tenant:
    """The tenant of the request being served (set by ``install_auth``)."""
    return g.tenant
