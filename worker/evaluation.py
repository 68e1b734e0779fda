"""Benchmark evaluation following the protocol of ``../shared/data/README.md``.

HR images are modcropped, degraded with Pillow's bicubic, upscaled by an engine, and compared on the
Y channel after shaving ``scale`` pixels per border. Any callable ``(lr_uint8_rgb, scale) ->
hr_uint8_rgb`` can be measured, so the network and the bicubic baseline go through the same code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from worker.quality import bicubic_downscale, modcrop, psnr_y, ssim_y

Upscaler = Callable[[np.ndarray, int], np.ndarray]
BENCHMARK_SETS = ("set5", "set14", "bsd68")


@dataclass(frozen=True)
class SetScore:
    """Mean Y-PSNR (dB) and Y-SSIM of one method on one benchmark set at one scale."""

    psnr: float
    ssim: float
    images: int


def load_benchmark(folder: Path) -> list[np.ndarray]:
    """Every image of a benchmark folder as uint8 RGB (greyscale images are replicated to RGB)."""
    images = []
    for path in sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in {".png", ".bmp", ".jpg"}):
        with Image.open(path) as image:
            images.append(np.asarray(image.convert("RGB")))
    if not images:
        raise FileNotFoundError(f"no benchmark images in {folder}")
    return images


def score(upscale: Upscaler, images: list[np.ndarray], scale: int, with_ssim: bool = True) -> SetScore:
    """Mean PSNR/SSIM of ``upscale`` over ``images`` at ``scale``."""
    psnrs, ssims = [], []
    for image in images:
        hr = modcrop(image, scale)
        estimate = upscale(bicubic_downscale(hr, scale), scale)
        psnrs.append(psnr_y(hr, estimate, shave=scale))
        if with_ssim:
            ssims.append(ssim_y(hr, estimate, shave=scale))
    return SetScore(float(np.mean(psnrs)), float(np.mean(ssims)) if ssims else float("nan"), len(images))
