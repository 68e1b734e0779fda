"""Liveness (``/healthz``) and readiness (``/readyz``: database reachable and migrated; Redis and storage
reported).

Readiness turns on the database alone. Redis and storage are shared by every API pod: when they are away,
not ready took every pod out of the Service at once, and clients got the ingress's bare 503 in place of the API's
own answers (a submit accepted and published later without Redis; a 503 problem naming storage). They are
reported (``status: degraded``) for monitoring to alert on."""

from __future__ import annotations

from flask import Blueprint, jsonify

from api.openapi import operation
from api.schemas import Health
from api.services import services
from shared.migrate import current_revision, schema_behind

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
@operation("Liveness: the process is up", {200: ("Up", Health)}, tag="health")
def healthz():
    return jsonify(status="ok", checks={})


@blueprint.get("/readyz")
@operation("Readiness: database reachable and migrated (Redis and storage reported)",
           {200: ("Ready: status ok, or degraded with the failing Redis or storage check", Health),
            503: ("The database is unreachable or not migrated", Health)}, tag="health")
def readyz():
    svc = services()
    checks = {}
    try:
        with svc.probe_engine.connect() as conn:
            # a pod that starts before the migration ran would take traffic and fail every request
            behind = schema_behind(current_revision(conn))
        checks["database"] = f"error: {behind}" if behind else "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        svc.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    try:
        svc.storage.check()
        checks["storage"] = "ok"
    except Exception as exc:
        checks["storage"] = f"error: {type(exc).__name__}"
    if checks["database"] != "ok":
        return jsonify(status="unavailable", checks=checks), 503
    return jsonify(status="ok" if all(v == "ok" for v in checks.values()) else "degraded", checks=checks), 200
