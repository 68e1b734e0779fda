"""The degradation-strength scale (0 clean .. 1 heavy): one definition for training labels and inference.

Training labels each damaged patch with it; at inference ``worker.input_profile`` measures it from the
file; a job's ``denoise`` sets it directly. Keeping the mapping in one place keeps the three consistent.
"""

from __future__ import annotations

import numpy as np

# Quality at which a JPEG counts as undamaged (strength 0) and at which it counts as fully damaged (strength 1).
JPEG_CLEAN_QUALITY = 100
JPEG_HEAVY_QUALITY = 30
# Gaussian noise sigma (0..255 scale) that counts as fully damaged.
NOISE_HEAVY_SIGMA = 20.0
# A lossy WebP's mean luma quantizer index (0..127, ``worker.webp_header``) that maps to strength 1. Training sees
# JPEG damage only, so WebP's place on the scale is measured, not defined: on LR files of 18 training images
# (libwebp qualities 10..100, x2 and x4), the strength that served each quality best was about its mean index
# / 115 (docs/model.md, "What auto does with each file").
WEBP_HEAVY_QUANTIZER = 115.0


def jpeg_strength(quality: float) -> float:
    """Strength of a JPEG encode: 0 at quality 100, 1 at quality 30 and below (linear between)."""
    span = JPEG_CLEAN_QUALITY - JPEG_HEAVY_QUALITY
    return float(np.clip((JPEG_CLEAN_QUALITY - quality) / span, 0.0, 1.0))


def noise_strength(sigma: float) -> float:
    """Strength of additive noise of standard deviation ``sigma`` (0..255 scale)."""
    return float(np.clip(sigma / NOISE_HEAVY_SIGMA, 0.0, 1.0))


def webp_strength(quantizer: float) -> float:
    """Strength of a lossy WebP encode from its mean luma quantizer index: linear, 1 from ``WEBP_HEAVY_QUANTIZER``."""
    return float(np.clip(quantizer / WEBP_HEAVY_QUANTIZER, 0.0, 1.0))


def strength_of(jpeg_quality: float | None, noise_sigma: float) -> float:
    """The label of a degradation: the stronger of its compression and its noise."""
    return max(jpeg_strength(jpeg_quality) if jpeg_quality is not None else 0.0, noise_strength(noise_sigma))
