"""``/metrics``: Prometheus metrics of the API, plus the depth of every queue read from Redis."""

from __future__ import annotations

import contextlib
import hmac
import time
from collections.abc import Iterator

import redis
from flask import Blueprint, Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from api.errors import ApiError
from api.openapi import operation
from api.schemas import Problem
from api.services import services
from shared.metrics import HTTP_LATENCY, HTTP_METHODS, HTTP_REQUESTS, exposition
from shared.queue import QUEUES, queue_depth

blueprint = Blueprint("metrics", __name__)


@blueprint.get("/metrics")
@operation("Prometheus metrics", {200: ("Text exposition format", None),
                                  401: ("UPSCALER_METRICS_TOKEN is set and this is not its bearer token", Problem),
                                  404: ("Off: production without UPSCALER_METRICS_TOKEN", Problem)},
           tag="health", content_type="text/plain")
def metrics():
    """Open in development; with ``UPSCALER_METRICS_TOKEN`` it needs that bearer token; in production without
    one it is off (404), so counts of every tenant's traffic are never public."""
    svc = services()
    token = svc.settings.metrics_token
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise ApiError("unauthorized", "send 'Authorization: Bearer <UPSCALER_METRICS_TOKEN>'",
                           headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    elif svc.settings.production:
        raise ApiError("not_found", "metrics are off: set UPSCALER_METRICS_TOKEN to scrape them")
    try:
        depths = {name: queue_depth(svc.redis, name) for name in QUEUES}
    except redis.RedisError:
        depths = {}  # no depth series while Redis is down; /readyz says why
    # content_type, not mimetype: Werkzeug appends a second charset to a text/ mimetype that already names one, a
    # header Prometheus 3 cannot parse (Go's mime.ParseMediaType: duplicate parameter), so it failed every scrape
    return Response(exposition(queue_depths(depths)), content_type=CONTENT_TYPE_LATEST)


class _QueueDepths(Collector):
    """The queue depths read for this scrape, as a collector rather than a ``Gauge``: in multiprocess mode a Gauge
    also writes a per-process file, which the aggregate then reported again with a ``pid`` label (the series
    came out twice, the second with every earlier scrape's stale values)."""

    def __init__(self, depths: dict[str, int]):
        self.depths = depths

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("upscaler_queue_depth", "Messages waiting in each queue", labels=["queue"])
        for name, depth in self.depths.items():
            family.add_metric([name], depth)
        yield family


def queue_depths(depths: dict[str, int]) -> CollectorRegistry:
    """A registry of its own holding ``upscaler_queue_depth`` for ``depths`` (queue name -> messages)."""
    registry = CollectorRegistry()
    if depths:
        registry.register(_QueueDepths(depths))
    return registry


def instrument(app: Flask) -> None:
    """Count and time every request by its route template (not its raw path: ids stay out of labels).

    Installed before the hooks that refuse requests (security, auth, rate limit), so a refused request is timed
    from its start too; ``create_app`` keeps that order."""

    @app.before_request
    def _start() -> None:
        g.metrics_started = time.perf_counter()
        g.metrics_untimed = 0.0

    @app.after_request
    def _record(response):
        route = request.url_rule.rule if request.url_rule else "unmatched"
        # a method any client may make up, before any key is asked: each new one was a new series for good
        method = request.method if request.method in HTTP_METHODS else "other"
        HTTP_REQUESTS.labels(method, route, str(response.status_code)).inc()
        HTTP_LATENCY.labels(method, route).observe(time.perf_counter() - g.metrics_started - g.metrics_untimed)
        return response


@contextlib.contextmanager
def untimed() -> Iterator[None]:
    """Leave the time inside out of this request's latency: a ``Prefer: wait`` spends it waiting for a job (the
    worker's time, ``upscaler_job_duration_seconds``), and as latency it filled the top bucket with the jobs'
    lengths, hiding how fast the API itself answers."""
    started = time.perf_counter()
    try:
        yield
    finally:
        g.metrics_untimed = g.get("metrics_untimed", 0.0) + time.perf_counter() - started
