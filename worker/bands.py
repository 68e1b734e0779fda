"""Bands: runs of whole tile rows, the unit both of streaming output and of splitting one job across workers.

A band is cut only where a tile row begins (``NetworkEngine.band_cuts``), so it is computed by exactly the
forward passes a whole-image run makes and bands join bit-exactly. Each band holds at most
``band_pixels`` output pixels (at least one tile row), which bounds a worker's memory whatever the image.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Band:
    """LR input rows ``y0..y1`` of the band's tile cores (its windows reach a margin beyond)."""

    index: int
    y0: int
    y1: int


def plan_bands(cuts: list[int], width: int, scale: int, band_pixels: int) -> list[Band]:
    """Group consecutive tile rows (``cuts`` from ``band_cuts``) into bands of at most ``band_pixels``
    output pixels each; a tile row larger than that is a band of its own."""
    row_pixels = width * scale * scale  # output pixels per LR row
    bands: list[Band] = []
    start = end = cuts[0]
    for cut in cuts[1:]:
        if end > start and (cut - start) * row_pixels > band_pixels:  # this tile row would overfill the band
            bands.append(Band(len(bands), start, end))
            start = end
        end = cut
    bands.append(Band(len(bands), start, end))
    return bands
