"""The worker process's own set-up (``worker.celery_app``)."""

from __future__ import annotations

import logging

import pytest


@pytest.mark.parametrize("asked,level",
                         [(logging.DEBUG, logging.DEBUG), ("ERROR", logging.ERROR), (None, logging.INFO)])
def test_the_log_level_a_worker_is_started_with_is_the_one_it_logs_at(asked, level):
    """``upscaler worker --loglevel DEBUG`` (or ERROR) left the worker at INFO: the level Celery passes was dropped."""
    from worker.celery_app import _setup_logging

    root = logging.getLogger()
    kept = root.level, root.handlers[:]
    try:
        _setup_logging(loglevel=asked)
        assert root.level == level
    finally:
        root.setLevel(kept[0])
        root.handlers[:] = kept[1]
