"""The engine interface every upscaler implements, and the bicubic baseline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class Condition:
    """What a conditioned network is told about one input; other engines ignore it.

    ``strength`` (0 clean .. 1 heavy) is how much restoration it applies (None: not conditioned, 0);
    ``jpeg_grid`` is where the input's JPEG 8x8 block grid lies (``worker.input_profile.jpeg_grid``; None: the
    input has none), for a network trained to use it.
    """

    strength: float | None = None
    jpeg_grid: tuple[int, int] | None = None

    def grid_at(self, y: int, x: int, period: int) -> tuple[int, int] | None:
        """Where image pixel (y, x) sits inside its block (None: no grid)."""
        if self.jpeg_grid is None:
            return None
        return (self.jpeg_grid[0] + y) % period, (self.jpeg_grid[1] + x) % period


def grid_input(position: tuple[int, int] | None) -> tuple[float, float, float]:
    """A grid-told network's per-window input (``BlockGridPlanes``): present, row, col of the window's top-left
    pixel inside its JPEG block, or zeros for an input without a block grid (None)."""
    return (0.0, 0.0, 0.0) if position is None else (1.0, float(position[0]), float(position[1]))


class Engine(Protocol):
    """Upscales an RGB uint8 array; returns an RGB ``PIL.Image`` (assembled without float copies)."""

    name: str
    scales: tuple[int, ...]
    conditioned: bool
    precision: str | None  # what the network computes in (``worker.engine.precision``); None: no network
    # what decides its pixels and band cuts (weights, tile size, precision): the bands of one split job must all
    # come from one build, or they fail to join (another tile size) or join with a seam (other weights)
    build: str

    def upscale(self, rgb: np.ndarray, scale: int, progress: ProgressFn | None = None,
                condition: Condition | None = None) -> Image.Image: ...


class BicubicEngine:
    """Pillow's bicubic interpolation: the baseline every network must beat."""

    name = "bicubic"
    scales = (2, 3, 4)
    conditioned = False
    precision = None
    build = "bicubic"

    def upscale(self, rgb: np.ndarray, scale: int, progress: ProgressFn | None = None,
                condition: Condition | None = None) -> Image.Image:
        h, w = rgb.shape[:2]
        result = Image.fromarray(rgb).resize((w * scale, h * scale), Image.BICUBIC)
        if progress:
            progress(1, 1)
        return result
