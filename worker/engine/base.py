"""The engine interface every upscaler implements, and the bicubic baseline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
from PIL import Image

ProgressFn = Callable[[int, int], None]


class Engine(Protocol):
    """Upscales an RGB uint8 array; returns an RGB ``PIL.Image`` (assembled without float copies).

    ``strength`` (0..1) is how much restoration a conditioned network applies; others ignore it.
    """

    name: str
    scales: tuple[int, ...]
    conditioned: bool

    def upscale(self, rgb: np.ndarray, scale: int, progress: ProgressFn | None = None,
                strength: float | None = None) -> Image.Image: ...


class BicubicEngine:
    """Pillow's bicubic interpolation: the baseline every network must beat."""

    name = "bicubic"
    scales = (2, 3, 4)
    conditioned = False

    def upscale(self, rgb: np.ndarray, scale: int, progress: ProgressFn | None = None,
                strength: float | None = None) -> Image.Image:
        h, w = rgb.shape[:2]
        result = Image.fromarray(rgb).resize((w * scale, h * scale), Image.BICUBIC)
        if progress:
            progress(1, 1)
        return result
