"""A JPEG inside a lossless file: finding, in decoded pixels, the grid and quantizer steps of an earlier encode.

Why: people save JPEGs again as PNG (an editor's export, a CMS, a screenshot of a product photo). The file is
lossless, but its pixels carry the JPEG's blocking and ringing, which the fidelity network sharpens: a quality-50
JPEG saved as PNG came out under bicubic at x2 (docs/model.md). Found, it goes where its JPEG would have gone.

How: a JPEG stores each 8x8 block's DCT coefficients as multiples of its quantization table's steps. Decoding
(an inverse DCT, rounding, YCbCr to RGB and rounding again) moves the luma coefficients off those multiples by
a fraction of a level, so the DCT of the decoded luma, taken on the encoder's block grid, still sits on a
lattice at each frequency, with the table's step as its period. A photo that was never a JPEG spreads its
coefficients evenly over any period.

1. The grid: each of the 64 possible grids is scored by how clear a lattice its blocks show on a sample; the two
   clearest are read, with the blockiest (where neighbouring pixels differ most across block edges: a coarse
   JPEG's flat blocks leave few coefficients to score, but strong edges).
2. At each candidate grid, the DCT of up to ``MAX_BLOCKS`` luma blocks spread over the image; per low frequency
   the lattice score of a period q is the mean of cos(2 pi c / q) over the coefficients c of at least q / 2 (the
   many near zero fit every period): about 1 on the lattice, about 0 or below off it. The step scores best: the
   decoder's rounding blurs the lattice, a divisor of the step more (its period is shorter), and a multiple or a
   neighbour puts many coefficients off its own lattice. Where the rounding is slight the step and its divisors
   tie, hence the largest period within ``TIE`` of the best.
3. The quality: the libjpeg quality whose scaled Annex K luma steps at those frequencies are closest (in ratio),
   the scale a JPEG file's own tables are read on (``worker.jpeg_tables``). Of the grids read, the coarsest
   reading wins (off its grid, a coarse JPEG's flat blocks meet in edges whose DCT shows a finer lattice).

Steps of 1 (libjpeg quality 95 and up at the lowest frequencies) leave no lattice to see; such a file stays
lossless, where its damage is too slight to matter (a JPEG of quality 97 or more goes to the fidelity network).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from worker.imaging import LUMA_601
from worker.jpeg_tables import BLOCK, LUMA, QUALITIES, scaled

# The frequencies (vertical, horizontal) read: the lowest AC ones, which a photo fills in most blocks (higher ones
# are zero in most blocks of a coarse JPEG, and a DC step of a flat graphic's blocks would mimic a lattice).
FREQUENCIES = ((0, 1), (1, 0), (1, 1), (0, 2), (2, 0), (1, 2), (2, 1), (2, 2))
MAX_BLOCKS = 4096  # spread over the image: a 20 MP file costs what a 0.26 MP one does
GRID_BLOCKS = 1024  # blocks each of the 64 possible grids is tried on
GRID_FREQUENCIES = ((0, 1), (1, 0), (1, 1))
MAX_CLIPPED = 8  # pixels of a block with a channel at 0 or 255 (clipped by the decoder) that leave it readable
CANDIDATES = 2  # grids of clearest lattice whose steps are read on MAX_BLOCKS blocks, with the blockiest grid
EDGE_LINES = 512  # rows (and columns) the blockiest grid is measured along
MAX_STEP = 64  # libjpeg quality 15's step at (2, 2)
MIN_COEFFICIENTS = 32  # a period is scored on at least this many coefficients of at least half of it
TIE = 0.01  # the step: the best scoring period, or the largest of those within this of its score (see above)
MIN_SCORE = 0.6  # a frequency's step counts from this lattice score (a clean photo's third best: at most 0.34)
MIN_FREQUENCIES = 3  # the file holds a JPEG when this many frequencies show a step ...
MAX_MISFIT = 0.25  # ... and the quality's steps fit theirs within this mean |log ratio|


@dataclass(frozen=True)
class JpegHistory:
    """An earlier JPEG encode found in a file's pixels."""

    quality: int  # on libjpeg's scale
    grid: tuple[int, int]  # the top-left pixel's (row, col) inside its 8x8 block, as ``input_profile.jpeg_grid``
    steps: dict[tuple[int, int], int]  # the luma steps found, by frequency (vertical, horizontal)


def find_jpeg_history(rgb: np.ndarray, finer_than: Sequence[int] | None = None) -> JpegHistory | None:
    """The JPEG these 8-bit RGB pixels were decoded from, or None when they show none (``MIN_FREQUENCIES``).

    ``finer_than``: the luma table (natural order) of the JPEG file holding the pixels; then only an encode
    coarser than it at every frequency read counts (a JPEG saved again finer). Comparing step by step, not by
    quality, keeps a single encode with tables of another shape (Photoshop's, mozjpeg's) from reading as two; a
    step is compared with the table's at both (v, u) and (u, v), as EXIF orientation may have transposed the
    pixels.
    """
    height, width = rgb.shape[:2]
    if min(height, width) < 4 * BLOCK:
        return None
    found = []
    for start in _candidate_starts(rgb):
        steps = _steps(_luma_coefficients(rgb, start))
        if finer_than is not None and any(step <= max(finer_than[8 * v + u], finer_than[8 * u + v])
                                          for (v, u), step in steps.items()):
            continue
        if len(steps) >= MIN_FREQUENCIES:
            quality, misfit = _quality(steps)
            if misfit <= MAX_MISFIT:
                found.append((quality, -len(steps), misfit, JpegHistory(quality, _grid(start), steps)))
    # the coarsest reading: off its grid a coarse JPEG's flat blocks meet in edges whose DCT sits on a lattice too,
    # at a fraction of the steps, and there more frequencies show one
    return min(found, key=lambda item: item[:3])[3] if found else None


def _grid(start: tuple[int, int]) -> tuple[int, int]:
    """The top-left pixel's position inside its block, for blocks starting at ``start`` (row, col)."""
    return (-start[0]) % BLOCK, (-start[1]) % BLOCK


def _luma(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float32) @ np.asarray(LUMA_601, dtype=np.float32)


def _candidate_starts(rgb: np.ndarray) -> set[tuple[int, int]]:
    """Block origins (row, col) to read: the ``CANDIDATES`` whose lattice is clearest on a sample of
    ``GRID_BLOCKS`` blocks (the sum of the best lattice scores of the ``GRID_FREQUENCIES``; a photo's are near 0
    or below off its grid), and the blockiest, where neighbouring pixels differ most across block edges (a coarse
    JPEG's flat blocks leave few coefficients to score there, but strong edges)."""
    def clarity(start: tuple[int, int]) -> float:
        coefficients = _luma_coefficients(rgb, start, GRID_BLOCKS)
        return sum(max(_lattice_scores(coefficients[:, v, u]).values(), default=-1.0) for v, u in GRID_FREQUENCIES)

    starts = [(row, col) for row in range(BLOCK) for col in range(BLOCK)]
    blockiest = tuple(int(np.argmax(_edge_strength(rgb, axis)) + 1) % BLOCK for axis in (0, 1))
    return {*sorted(starts, key=clarity, reverse=True)[:CANDIDATES], blockiest}


def _edge_strength(rgb: np.ndarray, axis: int) -> np.ndarray:
    """Mean |difference| between positions p and p + 1 of each block along ``axis``, over up to ``EDGE_LINES``
    lines across it."""
    lines = _spread(rgb.shape[1 - axis], EDGE_LINES)
    luma = _luma(rgb[:, lines] if axis == 0 else rgb[lines, :])
    differences = np.abs(np.diff(luma, axis=axis)).mean(axis=1 - axis)
    usable = len(differences) // BLOCK * BLOCK
    return differences[:usable].reshape(-1, BLOCK).mean(axis=0)


def _luma_coefficients(rgb: np.ndarray, start: tuple[int, int], limit: int = MAX_BLOCKS) -> np.ndarray:
    """The orthonormal 2-D DCT (JPEG's, level-shifted by 128) of up to ``limit`` luma blocks whose grid starts
    at ``start``, spread evenly over the image, less those with more than ``MAX_CLIPPED`` pixels at 0 or 255 in a
    channel: (blocks, 8, 8)."""
    rows, cols = (rgb.shape[0] - start[0]) // BLOCK, (rgb.shape[1] - start[1]) // BLOCK
    picked = _spread(rows * cols, limit)
    top = start[0] + (picked // cols) * BLOCK
    left = start[1] + (picked % cols) * BLOCK
    offsets = np.arange(BLOCK)
    pixels = rgb[(top[:, None] + offsets)[:, :, None], (left[:, None] + offsets)[:, None, :]]
    # a decoder clips R, G and B to 0..255, and luma computed from clipped pixels is no longer the decoded luma
    pixels = pixels[((pixels == 0) | (pixels == 255)).any(axis=3).sum(axis=(1, 2)) <= MAX_CLIPPED]
    return _DCT @ (_luma(pixels) - 128) @ _DCT.T


def _spread(count: int, limit: int) -> np.ndarray:
    """Up to ``limit`` of the indices 0 .. count - 1, evenly spread (all of them when there are fewer)."""
    return np.unique(np.linspace(0, count - 1, min(count, limit)).astype(int))


def _dct_matrix() -> np.ndarray:
    k = np.arange(BLOCK)
    matrix = np.cos((2 * k[None, :] + 1) * k[:, None] * np.pi / (2 * BLOCK)) * np.sqrt(2 / BLOCK)
    matrix[0] /= np.sqrt(2)
    return matrix.astype(np.float32)


_DCT = _dct_matrix()


def _steps(coefficients: np.ndarray) -> dict[tuple[int, int], int]:
    """The quantizer step of each frequency that shows one (``MIN_SCORE``)."""
    steps = {}
    for v, u in FREQUENCIES:
        scores = _lattice_scores(coefficients[:, v, u])
        best = max(scores.values(), default=-1.0)
        if best >= MIN_SCORE:
            steps[(v, u)] = max(q for q, score in scores.items() if score >= best - TIE)
    return steps


def _lattice_scores(values: np.ndarray) -> dict[int, float]:
    """Mean cos(2 pi c / q) over the values c with |c| >= q / 2, for each period q from 2 that has enough."""
    # each value once: blocks repeated exactly (a tiled pattern, a transparency checkerboard) fit some period
    values = np.unique(np.round(values, 3))
    magnitudes = np.abs(values)
    scores = {}
    for period in range(2, MAX_STEP + 1):
        on = values[magnitudes >= period / 2]
        if on.size < MIN_COEFFICIENTS:
            break
        scores[period] = float(np.cos(on * (2 * np.pi / period)).mean())
    return scores


def _quality(steps: dict[tuple[int, int], int]) -> tuple[int, float]:
    """The libjpeg quality whose luma steps fit ``steps`` best, and the fit's mean |log ratio|."""
    index = [8 * v + u for v, u in steps]
    found = np.log(np.array(list(steps.values()), dtype=np.float64))
    misfits = {q: float(np.abs(np.log(scaled(LUMA, q)[index]) - found).mean()) for q in QUALITIES}
    quality = min(QUALITIES, key=lambda q: (misfits[q], -q))
    return quality, misfits[quality]
