"""Prometheus metrics of the API and the workers (documented in docs/operations.md).

Processes that fork (gunicorn workers, Celery's prefork pool) share counters through
``PROMETHEUS_MULTIPROC_DIR``, which ``upscaler api`` and ``upscaler worker`` set before anything imports
prometheus_client; a single process (tests, ``flask run``) uses the default registry.
"""

from __future__ import annotations

import http
import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
JOB_SECONDS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600)
MEGAPIXELS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 12, 16, 24, 32, 40)

# the methods the API's HTTP metrics name; any other a client sends is counted as "other" (bounded labels)
HTTP_METHODS = frozenset(method.value for method in http.HTTPMethod)
HTTP_REQUESTS = Counter("upscaler_http_requests_total", "HTTP requests by route and status",
                        ["method", "route", "status"])
HTTP_LATENCY = Histogram("upscaler_http_request_duration_seconds", "HTTP request latency", ["method", "route"],
                         buckets=SECONDS)
JOBS_SUBMITTED = Counter("upscaler_jobs_submitted_total", "Jobs accepted by the API", ["model", "scale"])
JOBS_FINISHED = Counter("upscaler_jobs_finished_total", "Jobs that ended, by status and error code",
                        ["status", "code"])
JOB_DURATION = Histogram("upscaler_job_duration_seconds", "Worker time per job, download to upload",
                         ["model", "scale"], buckets=JOB_SECONDS)
JOB_MEGAPIXELS = Histogram("upscaler_job_input_megapixels", "Input size of processed jobs", ["model"],
                           buckets=MEGAPIXELS)
MEGAPIXELS_PROCESSED = Counter("upscaler_inference_input_megapixels_total", "Input megapixels through an engine",
                               ["model", "scale"])
INFERENCE_SECONDS = Counter("upscaler_inference_seconds_total", "Seconds spent in engines", ["model", "scale"])
WEBHOOK_DELIVERIES = Counter("upscaler_webhook_deliveries_total", "Webhook delivery attempts by outcome",
                             ["outcome"])


def registry() -> CollectorRegistry | None:
    """The registry to expose: an aggregate of all processes in multiprocess mode, else None (default)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    aggregate = CollectorRegistry()
    multiprocess.MultiProcessCollector(aggregate)
    return aggregate


def exposition(extra: CollectorRegistry | None = None) -> bytes:
    """The text exposition format of this process (or all sibling processes) plus ``extra``."""
    from prometheus_client import REGISTRY

    body = generate_latest(registry() or REGISTRY)
    return body + (generate_latest(extra) if extra is not None else b"")
