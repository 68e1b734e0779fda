"""Training end to end on tiny synthetic data: run, checkpoint, resume, extend, export, load."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from worker.engine.network import NetworkConfig
from worker.engine.network_engine import NetworkEngine
from worker.training.export import export_weights
from worker.training.trainer import TrainConfig, Trainer


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    for folder, count in (("train/a", 3), ("benchmark/set5", 2)):
        (tmp_path / folder).mkdir(parents=True)
        for i in range(count):
            yy, xx = np.mgrid[0:96, 0:120]
            arr = np.stack([xx * 2, yy * 2, (xx * yy) % 256], -1) + rng.normal(0, 10, (96, 120, 3))
            Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(tmp_path / folder / f"{i}.png")
    return tmp_path


def trainer(data, run_dir, steps):
    config = TrainConfig(network=NetworkConfig(blocks=1, channels=8), steps=steps, batch=2, lr_patch=12,
                         warmup_steps=2, validate_every=2, checkpoint_minutes=0, mixed_precision=False)
    return Trainer(run_dir, config, [data / "train"], data / "benchmark" / "set5")


def test_train_resume_extend_and_export(data, tmp_path):
    run_dir = tmp_path / "run"
    assert trainer(data, run_dir, 4).run()["step"] == 4
    iterations = json.loads((run_dir / "state.json").read_text())["step"]
    assert iterations == 4 and (run_dir / "checkpoint.keras").exists() and (run_dir / "psnr.png").exists()

    assert trainer(data, run_dir, 6).run()["step"] == 6  # resumes from step 4, extends the schedule
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [2, 4, 6]
    assert all(float(r["set5_x2"]) > 10 for r in rows)
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["steps"] == 6 and saved["restarts"][0]["at_step"] == 4

    weights = export_weights(run_dir, tmp_path / "models", name="tiny")
    record = json.loads((tmp_path / "models" / "tiny.json").read_text())
    assert record["training"]["steps_done"] == 6 and record["parameters"]["x4"] > 0
    engine = NetworkEngine(weights)
    out = engine.upscale(np.zeros((20, 30, 3), np.uint8), 3)
    assert out.size == (90, 60)
