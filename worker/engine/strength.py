"""The degradation-strength scale (0 clean .. 1 heavy): one definition for training labels and inference.

Training labels each damaged patch with it; at inference ``worker.input_profile`` measures it from the
file; a job's ``denoise`` sets it directly. Keeping the mapping in one place keeps the three consistent.
"""

from __future__ import annotations

import numpy as np

from worker.avif_header import QUANTIZER_MAX as AVIF_QUANTIZER_MAX
from worker.heif_header import QP_MAX as HEIF_QP_MAX
from worker.webp_header import QUANTIZER_MAX as WEBP_QUANTIZER_MAX

# Quality at which a JPEG counts as undamaged (strength 0) and at which it counts as fully damaged (strength 1).
JPEG_CLEAN_QUALITY = 100
JPEG_HEAVY_QUALITY = 30
# Gaussian noise sigma (0..255 scale) that counts as fully damaged.
NOISE_HEAVY_SIGMA = 20.0
# Formats whose encoder's quantizer index is read from the file, with the index's largest value (each reader's, as
# its codec defines it): a lossy WebP's mean VP8 luma index (``worker.webp_header``), an AVIF's AV1 ``base_q_idx``
# (``worker.avif_header``), a HEIC's HEVC slice QP (``worker.heif_header``).
QUANTIZER_RANGE = {"WEBP": WEBP_QUANTIZER_MAX, "AVIF": AVIF_QUANTIZER_MAX, "HEIF": HEIF_QP_MAX}
# Training sees JPEG damage only, so each format's place on the strength scale is measured, not defined: on LR files
# of 18 training images (x2 and x4) at the encoder's qualities 10..100, the robust network at 15 strengths, the
# strength that served each quality best (docs/model.md, "What auto does with each file"). WebP's followed its
# index linearly (index / 115: 0.006 dB under each quality's best on average); AVIF's grows exponentially with
# base_q_idx, as AV1's quantizer step does: strength 1 at AVIF_HEAVY_INDEX, a factor e per AVIF_INDEX_PER_E of
# index (0.003 dB under each quality's best on average, 0.02 at most; libavif qualities 10..80); HEVC's likewise in
# its QP, whose step doubles every 6 (0.003 dB on average, 0.01 at most; x265 through libheif, qualities 10..90).
WEBP_HEAVY_QUANTIZER = 115.0
AVIF_HEAVY_INDEX = 198.0
AVIF_INDEX_PER_E = 54.0
HEIF_HEAVY_QP = 38.0
HEIF_QP_PER_E = 7.25


def jpeg_strength(quality: float) -> float:
    """Strength of a JPEG encode: 0 at quality 100, 1 at quality 30 and below (linear between)."""
    span = JPEG_CLEAN_QUALITY - JPEG_HEAVY_QUALITY
    return float(np.clip((JPEG_CLEAN_QUALITY - quality) / span, 0.0, 1.0))


def noise_strength(sigma: float) -> float:
    """Strength of additive noise of standard deviation ``sigma`` (0..255 scale)."""
    return float(np.clip(sigma / NOISE_HEAVY_SIGMA, 0.0, 1.0))


def quantizer_strength(fmt: str, quantizer: float) -> float:
    """Strength of an encode of format ``fmt`` (a key of ``QUANTIZER_RANGE``) from its quantizer index."""
    if fmt == "WEBP":
        strength = quantizer / WEBP_HEAVY_QUANTIZER
    elif fmt == "AVIF":
        strength = np.exp((quantizer - AVIF_HEAVY_INDEX) / AVIF_INDEX_PER_E)
    elif fmt == "HEIF":
        strength = np.exp((quantizer - HEIF_HEAVY_QP) / HEIF_QP_PER_E)
    else:
        raise ValueError(f"no quantizer scale for {fmt}")
    return float(np.clip(strength, 0.0, 1.0))


def strength_of(jpeg_quality: float | None, noise_sigma: float) -> float:
    """The label of a degradation: the stronger of its compression and its noise."""
    return max(jpeg_strength(jpeg_quality) if jpeg_quality is not None else 0.0, noise_strength(noise_sigma))
