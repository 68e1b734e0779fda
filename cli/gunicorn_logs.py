"""gunicorn's own loggers (its errors and the access log) in the platform's log format.

Why: gunicorn's loggers do not propagate to the root logger that ``shared.logs.configure_logging`` formats,
so under ``UPSCALER_LOG_FORMAT=json`` its request lines would be the only plain-text lines in a JSON stream
(and a log pipeline's JSON parser fails on each). ``upscaler api`` passes this class as ``--logger-class``.
"""

from __future__ import annotations

from gunicorn import glogging

from shared.logs import JsonFormatter
from shared.settings import Settings


class Logger(glogging.Logger):
    def setup(self, cfg) -> None:
        super().setup(cfg)
        if Settings.from_env().log_format == "json":
            for log in (self.error_log, self.access_log):
                for handler in log.handlers:
                    handler.setFormatter(JsonFormatter())
