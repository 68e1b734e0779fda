"""What an input file tells about the damage it carries: its JPEG quality and its noise level.

``model=auto`` routes on this. A JPEG's quality is read from its quantization tables (the libjpeg
scaling of the Annex K tables, which Pillow, libjpeg-turbo, mozjpeg and most cameras start from);
a lossless file's noise is estimated from its flattest regions (Immerkær's Laplacian estimator per
block, then a low percentile of the blocks, so texture is not mistaken for noise).
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from worker.engine.strength import jpeg_strength, noise_strength

# ITU-T T.81 Annex K tables (the order does not matter here: only their sums are compared).
_LUMA = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                  14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                  49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.int64)
_CHROMA = np.array([17, 18, 24, 47] + [99] * 4 + [18, 21, 26, 66] + [99] * 4 + [24, 26, 56] + [99] * 5 + [47, 66]
                   + [99] * 38, dtype=np.int64)
LOSSY_FORMATS = {"JPEG", "MPO"}
# Luma noise sigma (0..255) from which a lossless input counts as noisy. Clean downscaled photos measure
# 0.7..1.0 (median) and up to ~6 for the most textured 1 % (grass, foliage: texture reads as noise), so
# the floor sits above that; colour noise of per-channel sigma s shows as luma sigma ~0.67 s.
NOISE_FLOOR_SIGMA = 6.0
LUMA_NOISE_RATIO = 0.67
BLOCK = 16


def _scaled(table: np.ndarray, quality: int) -> np.ndarray:
    factor = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((table * factor + 50) // 100, 1, 255)


_SUMS = {q: (int(_scaled(_LUMA, q).sum()), int(_scaled(_CHROMA, q).sum())) for q in range(1, 101)}


def estimate_jpeg_quality(tables: dict[int, list[int]]) -> int:
    """The libjpeg quality (1..100) whose scaled tables are closest to a file's tables."""
    luma = int(np.sum(tables[0]))
    chroma = int(np.sum(tables[1])) if 1 in tables else None

    def distance(q: int) -> float:
        ls, cs = _SUMS[q]
        return abs(ls - luma) + (abs(cs - chroma) if chroma is not None else 0)

    return min(range(1, 101), key=lambda q: (distance(q), -q))


def estimate_noise_sigma(rgb: np.ndarray, strip_blocks: int = 32) -> float:
    """Standard deviation (0..255) of white noise in an image, from its flattest 16x16 blocks.

    Computed a strip of block rows at a time, so a 20-megapixel input needs a few MB, not a full float copy.
    """
    height, width = rgb.shape[:2]
    if min(height, width) < 3 * BLOCK:
        return 0.0
    rows, cols = (height - 2) // BLOCK, (width - 2) // BLOCK
    luma = np.array([0.299, 0.587, 0.114])
    means = []
    for first in range(0, rows, strip_blocks):
        last = min(first + strip_blocks, rows)
        strip = rgb[first * BLOCK: last * BLOCK + 2, : cols * BLOCK + 2].astype(np.float64)
        grey = strip @ luma if strip.ndim == 3 else strip
        lap = (grey[:-2, :-2] - 2 * grey[:-2, 1:-1] + grey[:-2, 2:]
               - 2 * grey[1:-1, :-2] + 4 * grey[1:-1, 1:-1] - 2 * grey[1:-1, 2:]
               + grey[2:, :-2] - 2 * grey[2:, 1:-1] + grey[2:, 2:])
        means.append(np.abs(lap).reshape(last - first, BLOCK, cols, BLOCK).mean(axis=(1, 3)))
    # Immerkær: sigma = sqrt(pi/2) / 6 * mean|Laplacian| for white noise.
    return float(np.sqrt(np.pi / 2) / 6 * np.percentile(np.concatenate(means), 10))


# How ``ImageOps.exif_transpose`` turns each EXIF orientation upright.
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}
JPEG_BLOCK = 8
ORIENTATION_TAG = 0x0112


def jpeg_grid(raw_size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """Where a JPEG's 8x8 block grid lies in its upright pixels: the position (row, col) inside its block of
    the upright image's top-left pixel.

    The encoder's blocks start at the stored image's top-left corner; turning it upright can move a partial
    block to the top or left and run a block's pixels backwards. A DCT block mirrored is a DCT block, so a
    backwards run is given as the forward position that puts the block edges in the same places. Found by
    turning a small image with the same sizes modulo 8 the way decoding does.
    """
    width, height = raw_size
    proxy_w, proxy_h = JPEG_BLOCK + width % JPEG_BLOCK, JPEG_BLOCK + height % JPEG_BLOCK
    rows, cols = np.mgrid[0:proxy_h, 0:proxy_w]
    proxy = Image.fromarray(((rows % JPEG_BLOCK) * JPEG_BLOCK + cols % JPEG_BLOCK).astype(np.uint8))
    if orientation in _UPRIGHT:
        proxy = proxy.transpose(_UPRIGHT[orientation])
    upright = np.asarray(proxy).astype(int)
    origin = divmod(int(upright[0, 0]), JPEG_BLOCK)

    def forward(step: int) -> int:
        """The grid position of the top-left pixel along the upright axis whose next pixel has value ``step``."""
        after = divmod(int(step), JPEG_BLOCK)
        axis = 0 if after[0] != origin[0] else 1
        moved = (after[axis] - origin[axis]) % JPEG_BLOCK
        return origin[axis] if moved == 1 else JPEG_BLOCK - 1 - origin[axis]

    return forward(upright[1, 0]), forward(upright[0, 1])


@dataclass(frozen=True)
class InputProfile:
    """The measured damage of one input."""

    format: str
    lossy: bool
    jpeg_quality: int | None
    noise_sigma: float
    jpeg_grid: tuple[int, int] | None = None  # ``jpeg_grid``'s position for a JPEG; None otherwise

    @property
    def strength(self) -> float:
        """Restoration strength 0..1 for the conditioned network (the training labels' scale).

        A lossy file's strength comes from its quality alone: its noise cannot be told apart from its
        quantisation error by the estimator, and the quality is the reliable signal. A lossless file's
        comes from its noise, once that is above the texture floor.
        """
        if self.lossy:
            return round(jpeg_strength(self.jpeg_quality if self.jpeg_quality is not None else 100), 3)
        if self.noise_sigma < NOISE_FLOOR_SIGMA:
            return 0.0
        return round(noise_strength(self.noise_sigma / LUMA_NOISE_RATIO), 3)

    @property
    def damaged(self) -> bool:
        """Compressed or noisy: the robust network's kind of input."""
        return self.lossy or self.noise_sigma >= NOISE_FLOOR_SIGMA

    def to_dict(self) -> dict:
        return {**asdict(self), "noise_sigma": round(self.noise_sigma, 2)}


# A lossy WebP does not record its quality; 80 is cwebp's and most CDNs' default.
ASSUMED_WEBP_QUALITY = 80


def webp_is_lossless(path: Path) -> bool:
    """Walk the RIFF chunks: a ``VP8L`` image chunk is lossless, ``VP8 `` is lossy."""
    with open(path, "rb") as fh:
        if fh.read(12)[8:12] != b"WEBP":
            return False
        while header := fh.read(8):
            if len(header) < 8:
                break
            fourcc, size = header[:4], struct.unpack("<I", header[4:])[0]
            if fourcc in (b"VP8L", b"VP8 "):
                return fourcc == b"VP8L"
            fh.seek(size + (size & 1), 1)
    return False


def profile_input(path: Path, rgb: np.ndarray) -> InputProfile:
    """Profile an input file (its format and quantization tables) and its decoded RGB pixels."""
    with Image.open(path) as image:
        fmt = (image.format or "unknown").upper()
        tables = getattr(image, "quantization", None)
        grid = jpeg_grid(image.size, image.getexif().get(ORIENTATION_TAG, 1)) if fmt in LOSSY_FORMATS else None
    quality = estimate_jpeg_quality(tables) if fmt in LOSSY_FORMATS and tables else None
    lossy = fmt in LOSSY_FORMATS
    if fmt == "WEBP" and not webp_is_lossless(path):
        lossy, quality = True, ASSUMED_WEBP_QUALITY
    return InputProfile(fmt, lossy, quality, estimate_noise_sigma(rgb), grid)
