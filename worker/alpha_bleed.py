"""Colour under fully transparent pixels, filled from the visible pixels around it before upscaling.

Why: a file keeps some colour under alpha 0 (black from most exporters, a GIF's or PNG's key colour), invisible
at its own size. Upscaling reads across the edge: the network and the resampler blend that hidden colour into
the new, partly transparent edge pixels (alpha is resized on its own), and the network rings against the false
edge inside the opaque ones. A product cut out on black came back with a dark outline down to -60 levels on a
white page. Filled with the colour of the nearest visible pixels, the edge upscales as if the object went on:
the same idea as premultiplied resampling, which only a linear resampler can use.

How: push-pull (a pyramid of alpha-weighted colour sums, halved until every block sees a visible pixel, then
read back down, each level filling its hidden cells from visible neighbours where it has some, else from the
coarser level). O(pixels), no dependencies, and visible pixels are never changed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

STRIP_ROWS = 256  # the full-size step works a band of rows at a time: its float planes stay small


def fill_hidden(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``rgb`` (H x W x 3) with every pixel whose ``alpha`` is 0 given the colour of the visible pixels nearest to
    it; the input itself when nothing (or everything) is hidden. Memory: beside the input and its copy, a
    half-size pyramid (a fifth of a float copy of the image) and one band of rows at a time."""
    visible = alpha != 0
    if visible.all() or not visible.any():
        return rgb
    colour, weight = _halved(rgb * visible[..., None]), _halved(visible)
    levels = [(colour, weight)]
    while (weight == 0).any() and max(weight.shape) > 1:
        colour, weight = _halved(colour), _halved(weight)
        levels.append((colour, weight))
    filled = _mean(*levels[-1])
    for colour, weight in reversed(levels[:-1]):
        filled = _read_back(lambda lo, hi, c=colour: c[lo:hi], lambda lo, hi, w=weight: w[lo:hi], filled,
                            np.empty(colour.shape, np.float32))
    return _read_back(lambda lo, hi: (rgb[lo:hi] * visible[lo:hi, :, None]).astype(np.float32),
                      lambda lo, hi: visible[lo:hi].astype(np.float32), filled, rgb.copy())


def _read_back(colour_rows: Callable[[int, int], np.ndarray], weight_rows: Callable[[int, int], np.ndarray],
               coarse: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Fill one level into ``out``, a band of rows at a time: a float ``out`` (a pyramid level) takes every
    cell, the copy of the image only its hidden pixels. ``colour_rows(lo, hi)`` and ``weight_rows(lo, hi)`` give
    the level's colour sums and weights, ``coarse`` is the level below it, already filled."""
    height, width = out.shape[:2]
    level = out.dtype == np.float32
    for top in range(0, height, STRIP_ROWS):
        bottom = min(top + STRIP_ROWS, height)
        lo, hi = max(top - 1, 0), min(bottom + 1, height)  # a row of context each side for the neighbours
        below = _doubled(coarse[lo // 2:(hi + 1) // 2], (2 * ((hi + 1) // 2 - lo // 2), width))
        weight = weight_rows(lo, hi)
        rows = _pulled(colour_rows(lo, hi), weight, below[lo - 2 * (lo // 2):][:hi - lo])[top - lo:bottom - lo]
        if level:
            out[top:bottom] = rows
            continue
        if np.issubdtype(out.dtype, np.integer):
            rows = np.clip(np.rint(rows), 0, np.iinfo(out.dtype).max)
        np.copyto(out[top:bottom], rows.astype(out.dtype), where=(weight[top - lo:bottom - lo] == 0)[..., None])
    return out


def _pulled(colour: np.ndarray, weight: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """One level read back: a cell with weight keeps its mean colour; a hidden cell next to some takes their mean
    (the coarser level alone gave a hidden pixel beside an edge the mean of a block as large as its alignment
    made it); any other takes the coarser level's."""
    around_colour, around_weight = _box3(colour), _box3(weight)
    near = np.where((around_weight > 0)[..., None], _mean(around_colour, around_weight), coarse)
    return np.where((weight > 0)[..., None], _mean(colour, weight), near)


def _box3(plane: np.ndarray) -> np.ndarray:
    """Sums over each cell's 3 x 3 neighbourhood (zeros beyond the edges)."""
    height, width = plane.shape[:2]
    padded = np.pad(plane, [(1, 1), (1, 1)] + [(0, 0)] * (plane.ndim - 2))
    total = np.zeros_like(plane, dtype=np.float32)
    for dy in range(3):
        for dx in range(3):
            total += padded[dy:dy + height, dx:dx + width]
    return total


def _halved(plane: np.ndarray) -> np.ndarray:
    """Sums of 2 x 2 blocks, as float32 (an odd last row or column padded with zeros: no weight, no colour)."""
    height, width = plane.shape[:2]
    if height % 2 or width % 2:
        plane = np.pad(plane, [(0, height % 2), (0, width % 2)] + [(0, 0)] * (plane.ndim - 2))
    return plane.reshape(plane.shape[0] // 2, 2, plane.shape[1] // 2, 2, *plane.shape[2:]).sum(axis=(1, 3),
                                                                                                dtype=np.float32)


def _doubled(plane: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Each pixel as a 2 x 2 block, cut to ``shape``'s height and width."""
    return plane.repeat(2, axis=0).repeat(2, axis=1)[:shape[0], :shape[1]]


def _mean(colour: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return colour / np.maximum(weight, 1e-12)[..., None]
