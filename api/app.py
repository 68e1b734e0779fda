"""The application factory: wires settings, database, storage, queue client and blueprints."""

from __future__ import annotations

import logging
import threading

from flask import Flask

from api.auth import install_auth
from api.errors import register_error_handlers
from api.quotas import install_rate_limit
from api.request_ids import install_request_ids
from api.routes import deliveries, files, health, jobs, meta, metrics, models, page, reference, usage, webhooks
from api.security import install_security
from api.services import Services
from shared.catalog import catalog_for
from shared.db import make_engine, make_session_factory
from shared.queue import make_celery
from shared.settings import Settings
from shared.storage import make_storage


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()  # logging is the process's: set by ``upscaler api`` (gunicorn_logs)
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes
    app.json.sort_keys = False
    engine = make_engine(settings.database_url)
    app.extensions["upscaler"] = Services(
        settings=settings,
        engine=engine,
        probe_engine=make_engine(settings.database_url, pooled=False),
        sessions=make_session_factory(engine),
        storage=make_storage(settings, for_api=True),
        celery=make_celery(settings, publisher=True),
        catalog=catalog_for(settings),
        redis=Services.redis_for(settings),
        waiters=threading.BoundedSemaphore(max(1, settings.api_threads // 2)),
        lookups=threading.BoundedSemaphore(max(1, settings.api_threads // 2)),
        storage_calls=threading.BoundedSemaphore(max(1, settings.api_threads - 1)),
    )
    for module in (jobs, deliveries, webhooks, usage, models, files, health, meta, metrics, page, reference):
        app.register_blueprint(module.blueprint)
    install_request_ids(app)  # first: every other hook's errors and log lines carry the id
    register_error_handlers(app)
    metrics.instrument(app)  # first: its clock starts before any hook that may refuse the request
    install_security(app, settings)
    install_auth(app, settings)
    install_rate_limit(app)
    logging.getLogger(__name__).info("API ready (database %s, storage %s)", engine.url.get_backend_name(),
                                     settings.storage)
    return app
