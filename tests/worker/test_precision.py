"""Inference precision: chosen from the settings and the CPU's flags, bf16 within a level of float32, tiling still
exact in bf16."""

import numpy as np
import pytest
from PIL import Image

from shared.catalog import catalog_for
from shared.settings import Settings, SettingsError
from worker.engine.base import Condition
from worker.engine.network_engine import NetworkEngine
from worker.engine.precision import choose_precision
from worker.engine.registry import EngineRegistry
from worker.quality import psnr_y


@pytest.mark.parametrize("asked", ["float32", "bfloat16", "auto"])
def test_the_settings_choose_the_precision_networks_run_in(asked):
    engines = EngineRegistry(Settings(inference_precision=asked))
    engine = engines.get("residual_sr")
    assert engine.precision == choose_precision(asked) and engine.precision in ("float32", "bfloat16")
    head, tail = (engine._models[2].get_layer(name) for name in ("head_x2", "tail_x2"))
    assert (head.compute_dtype, tail.compute_dtype) == (engine.precision, "float32")
    assert engines.get("bicubic").precision is None


def test_an_unknown_precision_is_refused():
    with pytest.raises(SettingsError, match="UPSCALER_INFERENCE_PRECISION"):
        Settings.from_env({"UPSCALER_INFERENCE_PRECISION": "float16"}, secret_key="x" * 32)


def test_bf16_upscales_within_a_level_or_two_of_float32(request):
    """The tail, skip and pixel shuffle stay float32 in mixed bf16, so the output keeps its precision."""
    weights = catalog_for(Settings())["residual_sr_cond"].weights
    with Image.open(request.config.rootpath / "shared" / "samples" / "sample.jpg") as sample:
        lr = np.asarray(sample.convert("RGB"))[:64, :80]
    condition = Condition(0.36, (0, 0))
    full, half = (np.asarray(NetworkEngine(weights, precision=p).upscale(lr, 4, condition=condition))
                  for p in ("float32", "bfloat16"))
    difference = np.abs(full.astype(int) - half.astype(int))
    assert difference.max() <= 2 and psnr_y(full, half, 4) > 50, (difference.max(), psnr_y(full, half, 4))


def test_bf16_tiled_equals_whole(tiny_engine):
    """Every window computes each pixel the same way in bf16 too: no seams where tiles meet."""
    weights = tiny_engine.weights
    image = (np.random.default_rng(9).random((70, 90, 3)) * 255).astype(np.uint8)
    condition = Condition(0.5, (3, 5))
    tiled = NetworkEngine(weights, tile_size=48, memory_budget_mb=1, precision="bfloat16")
    whole = NetworkEngine(weights, tile_size=1024, precision="bfloat16")
    for scale in (2, 4):
        a, b = (np.asarray(e.upscale(image, scale, condition=condition), dtype=int) for e in (tiled, whole))
        assert np.array_equal(a, b)


def test_a_measurement_names_the_cpu_it_ran_on(tmp_path, monkeypatch):
    """The benchmarks printed a core count only, and the CPU model (on which bf16 is 1.8x faster, or 15x slower)
    was typed into docs/benchmarks.md by hand."""
    import os

    from worker.engine import precision

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9R14 96-Core Processor\nflags\t\t: fpu avx2 avx512f\n")
    assert precision.cpu_model(info) == "AMD EPYC 9R14 96-Core Processor"
    assert precision.cpu_model(tmp_path / "absent") == "cpu"
    monkeypatch.setattr(precision, "cpu_model", lambda: "AMD EPYC 9R14 96-Core Processor")
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "avx512f"})
    assert precision.machine_line() == f"AMD EPYC 9R14 96-Core Processor, {os.cpu_count()} cores (no native bf16)"
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512_bf16"})
    assert precision.machine_line().endswith("(native bf16)")
