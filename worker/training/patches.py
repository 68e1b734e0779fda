"""Random LR/HR training patch pairs, built in a background thread.

Without a degradation config the LR is exactly the benchmark's (``bicubic_downscale``); with one, each
patch goes through ``Degrader`` and carries its strength label. Each source image is also kept
at a reduced size: Sun-Hays photos are JPEGs, and downscaling them washes out compression
artefacts, giving cleaner targets and more variety of detail per pixel.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from worker.engine.base import grid_input
from worker.quality import bicubic_downscale
from worker.training.degradation import DegradationConfig, Degraded, Degrader

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
REDUCED_SIZE_FACTORS = (1.0, 0.6)


def find_images(folders: Sequence[Path]) -> list[Path]:
    """All image files under the given folders, sorted for reproducibility."""
    files = [p for folder in folders for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise FileNotFoundError(f"no training images under {', '.join(map(str, folders))}")
    return sorted(files)


def load_sources(files: Sequence[Path], min_side: int) -> list[np.ndarray]:
    """Decode every training image (RGB uint8) at each reduced size that still fits a patch."""
    sources = []
    for path in files:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        for factor in REDUCED_SIZE_FACTORS:
            w, h = round(rgb.width * factor), round(rgb.height * factor)
            if min(w, h) < min_side:
                continue
            resized = rgb if factor == 1.0 else rgb.resize((w, h), Image.BICUBIC)
            sources.append(np.asarray(resized))
    return sources


class PatchSampler:
    """Draws batches of (LR, strength, HR) float32 patches for every scale, area-weighted over the sources."""

    def __init__(self, sources: list[np.ndarray], scales: Sequence[int], lr_patch: int, batch: int, seed: int,
                 degradation: DegradationConfig | None = None):
        self.sources = sources
        self.scales = tuple(scales)
        self.lr_patch = lr_patch
        self.batch = batch
        self.rng = np.random.default_rng(seed)
        self.degrader = Degrader(degradation, np.random.default_rng(seed + 1)) if degradation else None
        areas = np.array([s.shape[0] * s.shape[1] for s in sources], dtype=np.float64)
        self.weights = areas / areas.sum()

    def _pair(self, scale: int) -> tuple[Degraded, np.ndarray]:
        hr_size = self.lr_patch * scale
        for _ in range(20):
            src = self.sources[self.rng.choice(len(self.sources), p=self.weights)]
            h, w = src.shape[:2]
            if h >= hr_size and w >= hr_size:
                break
        y = self.rng.integers(0, h - hr_size + 1)
        x = self.rng.integers(0, w - hr_size + 1)
        hr = src[y : y + hr_size, x : x + hr_size]
        hr = np.rot90(hr, self.rng.integers(4))
        if self.rng.random() < 0.5:
            hr = hr[:, ::-1]
        hr = np.ascontiguousarray(hr)
        if self.degrader is None:
            return Degraded(bicubic_downscale(hr, scale), 0.0), hr
        return self.degrader(hr, scale), hr

    def batch_for_all_scales(self) -> Batch:
        """One batch per scale, in ``self.scales`` order."""
        batch = Batch([], [], [], [])
        for scale in self.scales:
            pairs = [self._pair(scale) for _ in range(self.batch)]
            batch.lrs.append(np.stack([p[0].lr for p in pairs]).astype(np.float32) / 255.0)
            batch.strengths.append(np.array([[p[0].strength] for p in pairs], dtype=np.float32))
            batch.grids.append(np.array([grid_input(p[0].grid) for p in pairs], dtype=np.float32))
            batch.hrs.append(np.stack([p[1] for p in pairs]).astype(np.float32) / 255.0)
        return batch


class Batch(NamedTuple):
    """Per scale: LR patches, strength columns (N, 1), JPEG grid rows (N, 3: ``grid_input``), HR patches."""

    lrs: list[np.ndarray]
    strengths: list[np.ndarray]
    grids: list[np.ndarray]
    hrs: list[np.ndarray]


def prefetch(sampler: PatchSampler, depth: int = 4) -> Iterator[Batch]:
    """Yield batches built ahead of time by a daemon thread, so the model never waits on Pillow."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)

    def produce() -> None:
        while True:
            buffer.put(sampler.batch_for_all_scales())

    threading.Thread(target=produce, daemon=True, name="patch-sampler").start()
    while True:
        yield buffer.get()
