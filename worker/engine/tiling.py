"""Tiled inference: any image size in bounded memory, with output identical to whole-image inference.

Each window is a tile's *core* plus ``margin`` LR pixels of real neighbouring context on every side
(the margin is at least the network's receptive radius), and only the core's output is kept. All
windows have the same size (windows at the image edge slide inwards instead of being padded), so the
network sees exactly the pixels it would see on the whole image and tiles can be batched.

Batches never mix tile rows, so any run of whole tile rows (a *band*, ``worker.bands``) is computed by
exactly the same forward passes as in a whole-image run: a band job's output is bit-identical to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from worker.engine.base import ProgressFn

# (N, h, w, 3) float32 0..1 windows and their (N, 2) top-left (y, x) in the image -> (N, h*s, w*s, 3)
Predict = Callable[[np.ndarray, np.ndarray], np.ndarray]
Sink = Callable[[int, int, np.ndarray], None]  # (hr_y, hr_x, hr core float32 0..1)


@dataclass(frozen=True)
class Tile:
    """A window (what the network sees) and the core inside it (what is kept), in LR pixels."""

    window_y: int
    window_x: int
    core_y0: int
    core_y1: int
    core_x0: int
    core_x1: int


def _window_side(length: int, window: int, align: int) -> int:
    """One axis's window size: the whole side if it fits, else ``window`` shortened so that the last window,
    flush with the far edge, starts on a multiple of ``align`` (as every window does)."""
    return length if length <= window else window - (window - length) % align


def _axis(length: int, window: int, margin: int, align: int) -> Iterator[tuple[int, int, int]]:
    """(window start, core start, core end) along one axis; window starts are multiples of ``align``."""
    if length <= window:
        yield 0, 0, length
        return
    core = window - 2 * margin - (align - 1)  # a start rounded down to the alignment shifts the window left
    for start in range(0, length, core):
        end = min(start + core, length)
        yield min(max(start - margin, 0) // align * align, length - window), start, end


def plan_tiles(height: int, width: int, window: int, margin: int, align: int = 1) -> tuple[list[Tile], int, int]:
    """Tiles covering the image, and the (height, width) every window has.

    ``align``: windows start on multiples of it (a network with a half-resolution branch needs 2).
    """
    win_h, win_w = _window_side(height, window, align), _window_side(width, window, align)
    tiled_sides = [side for side, length in ((win_h, height), (win_w, width)) if length > window]
    if any(side <= 2 * margin + align - 1 for side in tiled_sides):  # a side that fits one window needs no margin
        raise ValueError(f"tile size {window} must exceed twice the margin {margin} (plus the alignment {align})")
    tiles = [Tile(wy, wx, cy0, cy1, cx0, cx1)
             for wy, cy0, cy1 in _axis(height, win_h, margin, align)
             for wx, cx0, cx1 in _axis(width, win_w, margin, align)]
    return tiles, win_h, win_w


def batch_size_for(window_h: int, window_w: int, bytes_per_lr_pixel: int, budget_bytes: int) -> int:
    """How many windows one forward pass may hold within the memory budget (at least one)."""
    return max(1, budget_bytes // max(window_h * window_w * bytes_per_lr_pixel, 1))


def row_cuts(tiles: list[Tile]) -> list[int]:
    """LR rows where a tile row's cores begin, plus the image height: the only places a band may start/end."""
    return sorted({t.core_y0 for t in tiles} | {t.core_y1 for t in tiles})


def batches(tiles: list[Tile], batch: int) -> Iterator[list[Tile]]:
    """Groups of at most ``batch`` tiles, each from one tile row."""
    for row_start in sorted({t.core_y0 for t in tiles}):
        row = [t for t in tiles if t.core_y0 == row_start]
        for first in range(0, len(row), batch):
            yield row[first: first + batch]


def run_tiled(predict: Predict, image: np.ndarray, scale: int, window: int, margin: int, batch: int,
              sink: Sink, progress: ProgressFn | None = None, rows: tuple[int, int] | None = None,
              align: int = 1) -> None:
    """Run ``predict`` over ``image`` (uint8, or uint16 for 16-bit inputs) tile by tile, handing each HR core
    (floats, 1.0 = the dtype's white) to ``sink``.

    ``rows`` (LR ``y0, y1`` on cuts of ``row_cuts``) limits the run to the tiles whose cores lie there;
    ``align`` is the network's ``alignment`` (see ``plan_tiles``).
    """
    height, width = image.shape[:2]
    tiles, win_h, win_w = plan_tiles(height, width, window, margin, align)
    if rows is not None:
        if rows[0] not in row_cuts(tiles) or rows[1] not in row_cuts(tiles):
            raise ValueError(f"rows {rows} do not fall on tile rows {row_cuts(tiles)}")
        tiles = [t for t in tiles if rows[0] <= t.core_y0 and t.core_y1 <= rows[1]]
    white = float(np.iinfo(image.dtype).max)
    done = 0
    for group in batches(tiles, batch):
        windows = np.stack([image[t.window_y: t.window_y + win_h, t.window_x: t.window_x + win_w] for t in group])
        outputs = predict(windows.astype(np.float32) / white, np.array([(t.window_y, t.window_x) for t in group]))
        for tile, out in zip(group, outputs, strict=True):
            y0, x0 = (tile.core_y0 - tile.window_y) * scale, (tile.core_x0 - tile.window_x) * scale
            y1, x1 = y0 + (tile.core_y1 - tile.core_y0) * scale, x0 + (tile.core_x1 - tile.core_x0) * scale
            sink(tile.core_y0 * scale, tile.core_x0 * scale, out[y0:y1, x0:x1])
        done += len(group)
        if progress:
            progress(done, len(tiles))
