"""Worker fixtures: a per-test ``WorkerContext`` on the parametrized database and real local storage."""

import json

import keras
import numpy as np
import pytest

from worker.context import WorkerContext
from worker.engine.archs import get_arch
from worker.engine.network import NetworkConfig
from worker.engine.network_engine import NetworkEngine

TINY = NetworkConfig(blocks=2, channels=8)
ARCHS = ["residual_sr", "residual_sr_cond"]


@pytest.fixture
def ctx(settings):
    context = WorkerContext.create(settings)
    yield context
    context.engine.dispose()


@pytest.fixture(scope="module", params=ARCHS)
def tiny_engine(request, tmp_path_factory):
    """A tiny network of each architecture with random (non-zero) weights, saved and loaded like a shipped one."""
    folder = tmp_path_factory.mktemp("tiny")
    keras.utils.set_random_seed(7)
    model = get_arch(request.param).build(TINY)
    rng = np.random.default_rng(7)
    for weight in model.weights:
        weight.assign(rng.normal(0, 0.1, weight.shape).astype("float32"))
    model.save_weights(folder / "tiny.weights.h5")
    (folder / "tiny.json").write_text(json.dumps({"name": "tiny", "arch": request.param, "network": TINY.to_dict()}))
    return NetworkEngine(folder / "tiny.weights.h5", tile_size=48, memory_budget_mb=1)


