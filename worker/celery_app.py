"""The worker's one Celery app object (``celery -A worker.celery_app worker``).

Process lifecycle lives in signals: each pool process builds its own ``WorkerContext`` after the
fork (fresh database connections), reports UP, then loads the default network once in the background
(not per job; a task that needs it first waits for that load). Pool processes beat a heartbeat that
the main process and ``upscaler worker-health`` watch (``worker.liveness``).
"""

from __future__ import annotations

import logging
import os
import threading
import time

from celery import signals
from celery.utils.log import mlevel

from shared.logs import configure_logging
from shared.queue import INFERENCE_QUEUE, make_celery
from shared.settings import Settings
from worker import liveness, scratch
from worker.context import WorkerContext
from worker.engine.threads import limit_threads

log = logging.getLogger(__name__)
settings = Settings.from_env()
celery = make_celery(settings)
celery.conf.include = ["worker.tasks"]

_context: WorkerContext | None = None
_consumes_inference = True


def get_context() -> WorkerContext:
    """The process's context, created on first use (solo pool) or at process init (prefork).

    Creating it is cheap (connections, no network): the network loads on first use or in the
    background after the pool process has reported UP.
    """
    global _context
    if _context is None:
        _context = WorkerContext.create(settings, celery)
    return _context


def _preload(ctx: WorkerContext) -> None:
    """Load the default model(s) while the pool process already takes tasks; a task waits on the load."""
    limit_threads(settings.inference_threads)
    if settings.model_load_delay:
        time.sleep(settings.model_load_delay)  # test aid: a model that loads as slowly as a cold CUDA start
    try:
        ctx.engines.preload(settings.default_model)
    except Exception:
        log.exception("could not preload model %s", settings.default_model)


@signals.celeryd_after_setup.connect
def _remember_queues(sender, instance, **_kwargs) -> None:
    global _consumes_inference
    _consumes_inference = INFERENCE_QUEUE in instance.app.amqp.queues.consume_from


@signals.worker_ready.connect
def _watch_pool(sender, **_kwargs) -> None:
    """In the main process: exit non-zero if the pool cannot start (worker.liveness)."""
    from celery.concurrency.prefork import TaskPool

    if isinstance(getattr(sender, "pool", None), TaskPool):
        liveness.start_watchdog(liveness.heartbeat_path(os.getpid()), settings.worker_heartbeat_timeout)


@signals.worker_ready.connect
def _serve_metrics(**_kwargs) -> None:
    """Expose the pool's aggregated metrics from the main process (``UPSCALER_WORKER_METRICS_PORT``)."""
    if not settings.worker_metrics_port:
        return
    from prometheus_client import start_http_server

    from shared.metrics import registry

    try:
        if aggregate := registry():
            start_http_server(settings.worker_metrics_port, registry=aggregate)
        else:
            start_http_server(settings.worker_metrics_port)
    except OSError:
        log.exception("cannot serve metrics on port %s", settings.worker_metrics_port)


@signals.setup_logging.connect
def _setup_logging(loglevel: int | str | None = None, **_kwargs) -> None:
    """The level ``--loglevel`` names (``upscaler worker --loglevel``): it was left at INFO whatever it said."""
    configure_logging(settings, mlevel(loglevel) if loglevel else logging.INFO)


@signals.worker_process_init.connect
def _init_process(**_kwargs) -> None:
    """Runs before the pool process reports UP: keep it short (no model loading here)."""
    global _context
    _context = None
    ctx = get_context()
    liveness.start_heartbeat(liveness.heartbeat_path(os.getppid()), first_after=settings.worker_start_timeout + 1)
    if _consumes_inference:
        threading.Thread(target=_preload, args=(ctx,), name="model-preload", daemon=True).start()
    scratch.remove_orphaned()  # what killed workers left in the temporary folder (last: it must delay nothing)


@signals.worker_process_shutdown.connect
def _shutdown_process(**_kwargs) -> None:
    if _context is not None:
        _context.engine.dispose()
