"""The API process's logging: the platform's own (the root logger) and gunicorn's (its errors and the access log),
in the platform's log format.

Why here: ``upscaler api`` passes this class as ``--logger-class``, and gunicorn sets it up in its master before
the workers fork, so every worker inherits it and the app factory touches no process-wide logging (it did, and
only for JSON: under the default text format the API's own lines, "API ready" and every warning, fell to
Python's last-resort handler, INFO dropped and the rest without time or level). gunicorn's loggers do not
propagate to the root logger, so under ``UPSCALER_LOG_FORMAT=json`` they get the JSON formatter too (a log
pipeline's JSON parser failed on each plain line).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from gunicorn import glogging

from shared.logs import JsonFormatter, configure_logging
from shared.settings import Settings


class Logger(glogging.Logger):
    def setup(self, cfg) -> None:
        super().setup(cfg)
        settings = Settings.from_env(secret=False)
        configure_logging(settings)
        if settings.log_format == "json":
            for log in (self.error_log, self.access_log):
                for handler in log.handlers:
                    handler.setFormatter(JsonFormatter())
            for handler in self.access_log.handlers:
                handler.addFilter(_AccessRequestId())


class _AccessRequestId(logging.Filter):
    """An access line carries its request's id in the ``request_id`` field, as every other line of that request
    does (it was only at the end of the message text, which a log query by field did not find): the answer's
    X-Request-Id, which gunicorn hands the line among its atoms ("-" where there is none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        atoms = record.args if isinstance(record.args, Mapping) else {}
        request_id = atoms.get("{x-request-id}o", "-")  # gunicorn lowercases the header names
        record.request_id = None if request_id == "-" else request_id
        return True
