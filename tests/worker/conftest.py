"""Worker fixtures: a per-test ``WorkerContext`` on the parametrized database and real local storage."""

import json
from dataclasses import replace

import keras
import numpy as np
import pytest

from worker.context import WorkerContext
from worker.engine.archs import get_arch
from worker.engine.network import NetworkConfig
from worker.engine.network_engine import NetworkEngine

TINY = NetworkConfig(blocks=2, channels=8)
ARCHS = ["residual_sr", "residual_sr_cond"]
# Every network shape the engine serves: each architecture, the conditioned one told the JPEG grid, and that one
# with a half-resolution branch (its windows must start on even coordinates).
VARIANTS = {"residual_sr": ("residual_sr", TINY), "residual_sr_cond": ("residual_sr_cond", TINY),
            "residual_sr_cond_grid": ("residual_sr_cond", replace(TINY, jpeg_grid=8)),
            "residual_sr_cond_branch": ("residual_sr_cond", replace(TINY, jpeg_grid=8, half_res_blocks=1,
                                                                    half_res_channels=8))}


@pytest.fixture
def ctx(settings):
    context = WorkerContext.create(settings)
    yield context
    context.engine.dispose()


@pytest.fixture(scope="module", params=list(VARIANTS))
def tiny_engine(request, tmp_path_factory):
    """A tiny network of each variant with random (non-zero) weights, saved and loaded like a shipped one."""
    folder = tmp_path_factory.mktemp("tiny")
    keras.utils.set_random_seed(7)
    arch, config = VARIANTS[request.param]
    model = get_arch(arch).build(config)
    rng = np.random.default_rng(7)
    for weight in model.weights:
        weight.assign(rng.normal(0, 0.1, weight.shape).astype("float32"))
    model.save_weights(folder / "tiny.weights.h5")
    (folder / "tiny.json").write_text(json.dumps({"name": "tiny", "arch": arch, "network": config.to_dict()}))
    return NetworkEngine(folder / "tiny.weights.h5", tile_size=48, memory_budget_mb=1)


