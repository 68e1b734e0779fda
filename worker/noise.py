"""How much white noise an image carries, read from its pixels (``worker.input_profile`` decides what the
readings mean for ``model=auto``).

Immerkær's Laplacian estimator per 16x16 block, then a low percentile of the blocks, so texture is not mistaken
for noise; in luma and in the colour differences (texture lives almost only in luma, while sensor noise is
independent per channel); luma again at half resolution, where white noise halves and a photo's texture does
not; and, on a page of dense text, on the paper between the strokes (a lossless file) or by how sparse and
scale-growing what fills the flattest blocks is (a lossy file, whose ringing fills the paper).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from worker.imaging import LUMA_601

BLOCK = 16
# Blocks with more than this share of pixels at 0 or 255 in some channel are left out unless perfectly flat:
# noise there is partly clipped away and reads as less than it is, while text or line art on white would read
# as texture-noise. A perfectly flat block stays in: it says the image has noise-free regions (a graphic).
CLIPPED_SHARE = 0.1
# Immerkær (1996): white noise of sigma s has mean |Laplacian| (the 3x3 kernel below) of s * 6 / sqrt(pi / 2).
IMMERKAER = np.sqrt(np.pi / 2) / 6
# The two-scale reading needs an image of this many 16x16 blocks (about 180x180 px), and this many of them
# readable (not clipped, not at the far edges): it averages the flattest tenth, and in smaller images a few blocks
# of fine texture or film grain can read as noise. Clean
# crops of the training images' LR read 2.5 or more in 0.3 % of 120x80 and 160x107 crops (up to 6.3), in none of
# 162 crops of 240x160 (126 blocks) nor of the 547 whole LR images (at most 1.9).
WHITE_MIN_IMAGE_BLOCKS = 100
WHITE_MIN_READ_BLOCKS = 50

# Where edges fill even the flattest blocks (a page of dense text, line art: 16x16 blocks of 12 px letters on
# 16 px lines are more than half stroke edge), their mean |Laplacian| reads the edges, not the noise. A lossless
# file's luma is read on its paper too: each block's quantile of |Laplacian|, which the pixels between the strokes
# decide. A clean page reads 0 there; white noise of sigma s about s (its |Laplacian| is normal of sigma 6 s, and
# the flattest tenth of blocks by a quantile reads a further 8 % low: on the training images' LR with grey noise of
# sigma 4..10, 0.92 of the mean reading in the median, hence the 1.087).
PAPER_QUANTILE = 0.25
PAPER_SCALE = 1.087 / (6 * NormalDist().inv_cdf(0.5 + PAPER_QUANTILE / 2))
# The paper reading replaces the mean reading where it is under this share of it: noise reads about the same by
# both (0.55 of it or more on every training LR with grey noise, 1.0 in the median), a clean page 0 against 10..15.
EDGE_RATIO = 0.5
# ``_stroke_ratio`` divides by the median |Laplacian| of the flattest blocks, at least this (white noise of sigma
# 0.25 reads 1): perfectly flat blocks read 0, and strokes on paper left perfectly flat (more than half the pixels)
# then read as sparse as they are instead of infinitely so.
MEDIAN_FLOOR = 1.0

@dataclass(frozen=True)
class NoiseEstimate:
    """Standard deviations (0..255) of white noise: in luma, and per channel as seen in the colour differences
    (about 0 for grey noise, the per-channel sigma for colour noise)."""

    luma: float
    colour: float
    white_luma: float | None = None  # the part of the luma reading white across two scales (``_white``)
    stroke_ratio: float | None = None  # lossy: flattest blocks' half-resolution mean over median (``_stroke_ratio``)


def _abs_laplacian_cells(plane: np.ndarray, blocks: int, cols: int, side: int = BLOCK) -> np.ndarray:
    """|Laplacian| of a strip (``blocks`` block rows of ``cols`` blocks; the plane has one pixel of margin on each
    side) as (block row, row in block, block column, column in block): each reading reduces the same cells."""
    lap = (plane[:-2, :-2] - 2 * plane[:-2, 1:-1] + plane[:-2, 2:]
           - 2 * plane[1:-1, :-2] + 4 * plane[1:-1, 1:-1] - 2 * plane[1:-1, 2:]
           + plane[2:, :-2] - 2 * plane[2:, 1:-1] + plane[2:, 2:])
    return np.abs(lap[: blocks * side, : cols * side]).reshape(blocks, side, cols, side)


def _block_laplacian(plane: np.ndarray, blocks: int, cols: int, side: int = BLOCK) -> np.ndarray:
    """Mean |Laplacian| of each ``side`` x ``side`` block of a strip."""
    return _abs_laplacian_cells(plane, blocks, cols, side).mean(axis=(1, 3))


def _block_quantile(cells: np.ndarray, quantile: float) -> np.ndarray:
    """Each block's ``quantile`` of its cells' values (``_abs_laplacian_cells``)."""
    blocks, side, cols, _ = cells.shape
    pixels = cells.transpose(0, 2, 1, 3).reshape(blocks, cols, side * side)
    rank = int(quantile * (side * side - 1))
    return np.partition(pixels, rank, axis=-1)[..., rank]


def estimate_noise(rgb: np.ndarray, strip_blocks: int = 32, opaque: np.ndarray | None = None,
                   lossless: bool = False) -> NoiseEstimate:
    """White noise in an image, from its flattest 16x16 blocks (not those partly clipped to black or white).

    ``opaque`` (H x W booleans, from the alpha channel): blocks with any pixel that is not fully opaque are left
    out. A cut-out product photo's transparent background is flat behind its alpha, and read as the image's
    flattest blocks it said "no noise" of a noisy photo. ``lossless``: luma is read on the paper between edges
    too (``PAPER_QUANTILE``); not in a lossy file, whose encoder zeroes the small Laplacians noise leaves there (on
    the training LR with colour noise of sigma 10 saved at JPEG quality 90, 7 % read under ``EDGE_RATIO``); a lossy
    file's are told from noise by ``_stroke_ratio`` instead.
    Computed a strip of block rows at a time, so a 20-megapixel input needs a few MB, not a full float copy.
    """
    height, width = rgb.shape[:2]
    if min(height, width) < 3 * BLOCK:
        return NoiseEstimate(0.0, 0.0)
    rows, cols = (height - 2) // BLOCK, (width - 2) // BLOCK
    luma, paper, median, coarse, red, blue, clipped, covered = [], [], [], [], [], [], [], []
    for first in range(0, rows, strip_blocks):
        last = min(first + strip_blocks, rows)
        strip = rgb[first * BLOCK: last * BLOCK + 4, : cols * BLOCK + 4].astype(np.float64)
        if strip.ndim == 2:
            strip = strip[..., None].repeat(3, axis=2)
        grey = strip @ np.array(LUMA_601)
        coarse.append(_coarse_block_laplacian(grey, last - first, cols))
        strip = strip[: (last - first) * BLOCK + 2, : cols * BLOCK + 2]
        grey = grey[: (last - first) * BLOCK + 2, : cols * BLOCK + 2]
        cells = _abs_laplacian_cells(grey, last - first, cols)  # once for both luma readings
        luma.append(cells.mean(axis=(1, 3)))
        if lossless:
            paper.append(_block_quantile(cells, PAPER_QUANTILE))
        else:
            median.append(_block_quantile(cells, 0.5))
        # colour differences scaled so colour noise of per-channel sigma s has sigma s in each
        red.append(_block_laplacian((strip[..., 0] - strip[..., 1]) / np.sqrt(2), last - first, cols))
        blue.append(_block_laplacian((strip[..., 2] - strip[..., 1]) / np.sqrt(2), last - first, cols))
        inner = strip[1:-1, 1:-1]
        at_limit = ((inner <= 0) | (inner >= 255)).any(axis=-1)
        clipped.append(at_limit.reshape(last - first, BLOCK, cols, BLOCK).mean(axis=(1, 3)))
        if opaque is not None:
            seen = opaque[first * BLOCK + 1: last * BLOCK + 1, 1: cols * BLOCK + 1]
            covered.append(seen.reshape(last - first, BLOCK, cols, BLOCK).all(axis=(1, 3)))
    fine, half, red_means, blue_means, clipped_share = (np.concatenate(m).ravel()
                                                        for m in (luma, coarse, red, blue, clipped))
    visible = np.concatenate(covered).ravel() if covered else np.ones(fine.shape, bool)
    usable = ((clipped_share <= CLIPPED_SHARE) | ((fine == 0) & (red_means == 0) & (blue_means == 0))) & visible
    keep = usable if usable.mean() >= 0.1 else (visible if visible.any() else np.ones_like(usable))

    def sigma(means: np.ndarray) -> float:
        return float(IMMERKAER * np.percentile(means[keep], 10))

    # the two-scale reading: usable blocks whose half-resolution Laplacian had the image's pixels all around
    margin = ((np.arange(rows) * BLOCK + BLOCK + 4 <= height)[:, None]
              & (np.arange(cols) * BLOCK + BLOCK + 4 <= width)[None, :]).ravel()
    read = usable & margin
    luma_sigma = sigma(fine)
    if lossless:
        between_edges = float(PAPER_SCALE * np.percentile(np.concatenate(paper).ravel()[keep], 10))
        luma_sigma = between_edges if between_edges < EDGE_RATIO * luma_sigma else luma_sigma
    chosen = keep & margin  # the blocks the luma reading chose from, where their half resolution was read
    strokes = None if lossless else _stroke_ratio(fine[chosen], half[chosen], np.concatenate(median).ravel()[chosen],
                                                  rows * cols)
    return NoiseEstimate(luma_sigma, (sigma(red_means) + sigma(blue_means)) / 2,
                         _white(fine[read], half[read], rows * cols), strokes)


def _coarse_block_laplacian(plane: np.ndarray, blocks: int, cols: int) -> np.ndarray:
    """Mean |Laplacian| of each 16x16 block at half resolution (2x2 means, 8x8 per block), scaled as the full
    resolution's (white noise of sigma s reads s/2 there). The plane starts where the strip does and needs 4 more
    rows and columns than its blocks (even sizes for the 2x2 means, one coarse pixel around for the Laplacian), so
    a coarse block sits one pixel below and right of its fine block. Where the image ends sooner the plane is
    edge-padded, and ``estimate_noise`` leaves those blocks out of the reading."""
    need = (blocks * BLOCK + 4, cols * BLOCK + 4)
    plane = np.pad(plane, ((0, need[0] - plane.shape[0]), (0, need[1] - plane.shape[1])), mode="edge")
    half = plane.reshape(need[0] // 2, 2, need[1] // 2, 2).mean(axis=(1, 3))
    return _block_laplacian(half, blocks, cols, BLOCK // 2)


def _white(fine: np.ndarray, coarse: np.ndarray, blocks: int) -> float | None:
    """Luma noise sigma from the flattest 10 % of blocks, read at two scales: what is white there.

    Why: texture reads as noise in one scale's Laplacian (foliage measures up to ~11), but a photo's texture is
    roughly scale-invariant, so its half-resolution reading is about its full-resolution one, while white noise
    of sigma s reads s at full and s/2 at half resolution. So s^2 ~ (full^2 - half^2) / 0.75: about 0 for clean
    photos however textured, about s for noise (a bit under it: choosing the flattest blocks at full
    resolution picks those where the noise happened to read low). None for an image of too few ``blocks``, or
    too few of them readable (``fine``), to tell.
    """
    if blocks < WHITE_MIN_IMAGE_BLOCKS or fine.size < WHITE_MIN_READ_BLOCKS:
        return None
    flattest = np.argsort(fine)[: fine.size // 10]
    full, half = IMMERKAER * fine[flattest].mean(), IMMERKAER * coarse[flattest].mean()
    return float(np.sqrt(max(full * full - half * half, 0.0) / 0.75))


def _stroke_ratio(fine: np.ndarray, coarse: np.ndarray, median: np.ndarray, blocks: int) -> float | None:
    """The flattest 10 % of blocks' mean |Laplacian| at half resolution over their median |Laplacian| at full: what
    fills them (``STROKE_RATIO`` in ``worker.input_profile`` says where it is strokes).

    Why: in a lossy file the luma reading cannot be taken on the paper between edges (the encoder's ringing fills
    it), so on a page of dense text it reads the strokes. Their edges are few pixels of large |Laplacian| (the
    mean is far above the median) and steps, which grow at half resolution (each 8x8 block holds the same strokes
    in a quarter of the pixels). White noise's |Laplacian| is half-normal (mean 1.18 times the median) and halves
    at half resolution, so it reads about 0.6; a photo's texture, about the same at both scales, 1..1.5; pages of
    text 2 or more. None for an image of too few ``blocks`` to tell (as ``_white``).
    """
    if blocks < WHITE_MIN_IMAGE_BLOCKS or fine.size < 10:
        return None
    flattest = np.argsort(fine)[: fine.size // 10]
    return float(coarse[flattest].mean() / max(median[flattest].mean(), MEDIAN_FLOOR))
