"""Test images made in code (no pytest here: the benchmarks import it too)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def photo(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    """A small textured RGB test image (smooth gradient + noise, so codecs and networks have work)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / max(width - 1, 1), yy * 255 / max(height - 1, 1), (xx + yy) % 255], axis=-1)
    return Image.fromarray(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8), "RGB")


def image_bytes(width: int = 64, height: int = 48, mode: str = "RGB", fmt: str = "PNG", seed: int = 0,
                **save) -> bytes:
    """``photo`` as the bytes of a file of ``fmt``."""
    image = photo(width, height, seed)
    if mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()
