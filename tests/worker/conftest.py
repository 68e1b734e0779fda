"""Worker fixtures: a per-test ``WorkerContext`` on the parametrized database and real local storage."""

import pytest

from worker.context import WorkerContext


@pytest.fixture
def ctx(settings):
    context = WorkerContext.create(settings)
    yield context
    context.engine.dispose()
