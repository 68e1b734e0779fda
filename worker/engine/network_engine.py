"""The trained network as an engine: weights loaded once per process, tiled inference."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from worker.engine.base import ProgressFn
from worker.engine.tiling import batch_size_for, run_tiled


class NetworkEngine:
    """Runs a multi-scale network shipped as ``<name>.weights.h5`` + ``<name>.json``."""

    def __init__(self, weights: Path, tile_size: int = 256, memory_budget_mb: int = 512):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras

        from worker.engine.network import NetworkConfig, build_network, scale_model

        record = json.loads(Path(weights).with_name(Path(weights).name.replace(".weights.h5", ".json")).read_text())
        self.name = record["name"]
        self.config = NetworkConfig.from_dict(record["network"])
        self.scales = self.config.scales
        keras.mixed_precision.set_global_policy("float32")
        network = build_network(self.config)
        network.load_weights(weights)
        self._models = {s: scale_model(network, s) for s in self.scales}
        self.margin = self.config.receptive_radius + 1
        self.tile_size = max(tile_size, 2 * self.margin + 16)
        self.memory_budget = memory_budget_mb * 1024 * 1024

    def bytes_per_lr_pixel(self, scale: int) -> int:
        """Rough peak bytes per LR pixel of a forward pass: a few live feature maps plus the output."""
        return 4 * (6 * self.config.channels + 3 * scale * scale * 3)

    def predict(self, scale: int, batch: np.ndarray) -> np.ndarray:
        """Float32 0..1 windows -> float32 0..1 HR windows (no clipping: tests compare raw output)."""
        return np.asarray(self._models[scale].predict_on_batch(batch), dtype=np.float32)

    def upscale(self, rgb: np.ndarray, scale: int, progress: ProgressFn | None = None) -> Image.Image:
        height, width = rgb.shape[:2]
        output = Image.new("RGB", (width * scale, height * scale))

        def paste(y: int, x: int, core: np.ndarray) -> None:
            output.paste(Image.fromarray(np.clip(np.round(core * 255.0), 0, 255).astype(np.uint8)), (x, y))

        window = min(self.tile_size, max(height, width))
        batch = batch_size_for(min(window, height), min(window, width), self.bytes_per_lr_pixel(scale),
                               self.memory_budget)
        run_tiled(lambda b: self.predict(scale, b), rgb, scale, window, self.margin, batch, paste, progress)
        return output
