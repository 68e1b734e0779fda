"""A trained network as an engine: built from its record through the architecture registry, weights
loaded once per process, tiled inference."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from PIL import Image

from shared.catalog import read_record_beside
from shared.limits import MIN_TILED_SIDE
from shared.settings import Settings
from worker.engine.base import Condition, ProgressFn, grid_input
from worker.engine.tiling import batch_size_for, plan_tiles, row_cuts, run_tiled


class NetworkEngine:
    """Runs a multi-scale network shipped as ``<name>.weights.h5`` + ``<name>.json``.

    Every layer gets its dtype policy explicitly (``precision``: float32, or mixed bfloat16 where the CPU computes
    it natively, ``worker.engine.precision``); no process-wide Keras policy is touched, so an engine loaded
    inside a training process changes nothing there.
    """

    def __init__(self, weights: Path, tile_size: int = Settings.tile_size,
                 memory_budget_mb: int = Settings.memory_budget_mb, precision: str = "float32"):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from worker.engine.archs import get_arch
        from worker.engine.network import scale_model
        from worker.engine.precision import PRECISIONS

        record = read_record_beside(weights)
        self.weights = Path(weights)
        self.name = record["name"]
        arch = get_arch(record["arch"])
        self.conditioned = arch.conditioned
        self.config = arch.config(record["network"])
        self.scales = self.config.scales
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
        self.precision = precision
        self.network = arch.build(self.config, PRECISIONS[precision])  # every scale's head (bench/backend_check)
        self.network.load_weights(weights)
        self._models = {s: scale_model(self.network, s) for s in self.scales}
        self.margin = self.config.receptive_radius + 1
        self.align = self.config.alignment
        self.tile_size = max(tile_size, 2 * self.margin + self.align + 16)
        self.memory_budget = memory_budget_mb * 1024 * 1024
        digest = hashlib.sha256(self.weights.read_bytes()).hexdigest()[:16]
        self.build = f"{self.name} {digest} tile {self.tile_size} {precision}"

    def bytes_per_lr_pixel(self, scale: int) -> int:
        """Rough peak bytes per LR pixel of a forward pass: a few live feature maps, the grid planes (if told the
        JPEG grid), the half-resolution branch's maps (a quarter of the pixels) and the output."""
        branch = self.config.channels + 3 * self.config.half_res_channels // 4 if self.config.half_res_blocks else 0
        return 4 * (6 * self.config.channels + 2 * 2 * self.config.jpeg_grid + branch + 3 * scale * scale * 3)

    def predict(self, scale: int, batch: np.ndarray, condition: Condition | None = None,
                origins: np.ndarray | None = None) -> np.ndarray:
        """Float32 0..1 windows whose top-left pixels sit at ``origins`` (y, x) in the image -> float32 0..1 HR
        windows (no clipping: tests compare raw output)."""
        from worker.engine.network import feed

        condition = condition or Condition()
        origins = np.zeros((len(batch), 2), int) if origins is None else origins
        period = self.config.jpeg_grid or 1
        grids = np.array([grid_input(condition.grid_at(y, x, period)) for y, x in origins], np.float32)
        strengths = np.full((len(batch), 1), condition.strength or 0.0, np.float32)
        inputs = feed(self._models[scale], {scale: batch}, {scale: strengths}, {scale: grids})
        return np.asarray(self._models[scale].predict_on_batch(inputs), dtype=np.float32)

    def _window_and_batch(self, height: int, width: int, scale: int) -> tuple[int, int]:
        window = min(self.tile_size, max(height, width))
        return window, batch_size_for(min(window, height), min(window, width), self.bytes_per_lr_pixel(scale),
                                      self.memory_budget)

    def band_cuts(self, height: int, width: int) -> list[int]:
        """LR rows where a band may begin or end (tile-row boundaries, 0 and ``height`` included): a band cut
        there is computed by exactly the forward passes a whole-image run makes, so bands join bit-exactly."""
        if min(height, width) < MIN_TILED_SIDE:
            return [0, height]
        window = min(self.tile_size, max(height, width))
        return row_cuts(plan_tiles(height, width, window, self.margin, self.align)[0])

    def upscale_rows(self, rgb: np.ndarray, scale: int, rows: tuple[int, int], progress: ProgressFn | None = None,
                     condition: Condition | None = None) -> np.ndarray:
        """HR rows ``rows[0]*scale .. rows[1]*scale`` of ``upscale(rgb)`` (``rows`` from ``band_cuts``), as an
        array of ``rgb``'s dtype (uint8, or uint16 at full depth): only this band's tiles run, each over the same
        window a whole-image run uses."""
        height, width = rgb.shape[:2]
        if min(height, width) < MIN_TILED_SIDE:
            if rgb.dtype != np.uint8:
                raise ValueError(f"images under {MIN_TILED_SIDE} px a side run at 8 bits")
            return np.asarray(self.upscale(rgb, scale, progress, condition))[rows[0] * scale: rows[1] * scale]
        y0 = rows[0] * scale
        white = float(np.iinfo(rgb.dtype).max)
        output = np.empty(((rows[1] - rows[0]) * scale, width * scale, 3), rgb.dtype)

        def store(y: int, x: int, core: np.ndarray) -> None:
            output[y - y0: y - y0 + core.shape[0], x: x + core.shape[1]] = np.clip(np.round(core * white), 0, white)

        window, batch = self._window_and_batch(height, width, scale)
        run_tiled(lambda b, at: self.predict(scale, b, condition, at), rgb, scale, window, self.margin, batch, store,
                  progress, rows=rows, align=self.align)
        return output

    def upscale(self, rgb: np.ndarray, scale: int, progress: ProgressFn | None = None,
                condition: Condition | None = None) -> Image.Image:
        height, width = rgb.shape[:2]
        if min(height, width) < MIN_TILED_SIDE:  # the bicubic skip's symmetric padding needs a few pixels of image
            padded = np.pad(rgb, ((0, max(MIN_TILED_SIDE - height, 0)), (0, max(MIN_TILED_SIDE - width, 0)), (0, 0)),
                            mode="edge")
            return self.upscale(padded, scale, progress, condition).crop((0, 0, width * scale, height * scale))
        output = Image.new("RGB", (width * scale, height * scale))

        def paste(y: int, x: int, core: np.ndarray) -> None:
            output.paste(Image.fromarray(np.clip(np.round(core * 255.0), 0, 255).astype(np.uint8)), (x, y))

        window, batch = self._window_and_batch(height, width, scale)
        run_tiled(lambda b, at: self.predict(scale, b, condition, at), rgb, scale, window, self.margin, batch, paste,
                  progress, align=self.align)
        return output
