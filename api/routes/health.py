"""Liveness (``/healthz``) and readiness (``/readyz``: database reachable and migrated, Redis and storage
reachable)."""

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
@operation("Readiness: database, Redis and storage reachable",
           {200: ("Ready", Health), 503: ("A dependency is unreachable", Health)}, tag="health")
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
    ready = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if ready else "unavailable", checks=checks), 200 if ready else 503
