"""The field's measurement protocol: modcrop, bicubic degradation, Y-channel PSNR and SSIM.

Training builds its LR patches with ``bicubic_downscale`` so the network learns exactly the
degradation the benchmark applies (Pillow's antialiased bicubic on a modcropped image).
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop so both sides are divisible by ``scale``."""
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale]


def bicubic_downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """uint8 HR (sides divisible by scale) -> uint8 LR, Pillow's antialiased bicubic."""
    h, w = hr.shape[:2]
    return np.asarray(Image.fromarray(hr).resize((w // scale, h // scale), Image.BICUBIC))


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """uint8 LR -> uint8 HR by Pillow's bicubic: the baseline every network must beat."""
    h, w = lr.shape[:2]
    return np.asarray(Image.fromarray(lr).resize((w * scale, h * scale), Image.BICUBIC))


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma on the 16..235 scale with MATLAB's rgb2ycbcr constants (input uint8 or 0..255 float),
    kept in floating point as BasicSR does (MATLAB rounds it to uint8: 0.01-0.04 dB lower on Set5 bicubic)."""
    rgb = rgb.astype(np.float64)
    return 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


def _shave(image: np.ndarray, border: int) -> np.ndarray:
    return image[border:-border, border:-border] if border else image


def psnr_y(reference: np.ndarray, estimate: np.ndarray, shave: int) -> float:
    """Y-channel PSNR (dB) of two uint8 RGB images after shaving ``shave`` pixels per border."""
    ref = _shave(rgb_to_y(reference), shave)
    est = _shave(rgb_to_y(estimate), shave)
    mse = float(np.mean((ref - est) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def _gaussian_filter(image: np.ndarray, sigma: float = 1.5, size: int = 11) -> np.ndarray:
    """'valid' 2-D Gaussian filtering, separable, as in Wang et al.'s reference SSIM."""
    ax = np.arange(size) - size // 2
    g = np.exp(-(ax**2) / (2 * sigma**2))
    g /= g.sum()
    rows = np.apply_along_axis(lambda r: np.convolve(r, g, mode="valid"), 1, image)
    return np.apply_along_axis(lambda c: np.convolve(c, g, mode="valid"), 0, rows)


def ssim_y(reference: np.ndarray, estimate: np.ndarray, shave: int) -> float:
    """Y-channel SSIM (Wang et al. 2004 constants, 11x11 Gaussian window, sigma 1.5)."""
    x = _shave(rgb_to_y(reference), shave)
    y = _shave(rgb_to_y(estimate), shave)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_x, mu_y = _gaussian_filter(x), _gaussian_filter(y)
    sxx = _gaussian_filter(x * x) - mu_x**2
    syy = _gaussian_filter(y * y) - mu_y**2
    sxy = _gaussian_filter(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return float(ssim_map.mean())
