"""The engine interface every upscaler implements, and the bicubic baseline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
from PIL import Image

ProgressFn = Callable[[int, int], None]


class Engine(Protocol):
    """Upscales an RGB uint8 array; returns an RGB ``PIL.Image`` (assembled without float copies)."""

    name: str
    scales: tuple[int, ...]

    def upscale(self, rgb: np.ndarray, scale: int, progress: ProgressFn | None = None) -> Image.Image: ...


class BicubicEngine:
    """Pillow's bicubic interpolation: the baseline every network must beat."""

    name = "bicubic"
    scales = (2, 3, 4)

    def upscale(self, rgb: np.ndarray, scale: int, progress: ProgressFn | None = None) -> Image.Image:
        h, w = rgb.shape[:2]
        result = Image.fromarray(rgb).resize((w * scale, h * scale), Image.BICUBIC)
        if progress:
            progress(1, 1)
        return result
