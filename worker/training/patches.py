"""Random LR/HR training patch pairs, built ahead of the model in a thread or in worker processes.

Without a degradation config the LR is exactly the benchmark's (``bicubic_downscale``); with one, each
patch goes through ``Degrader`` and carries its strength label. Each source image is also kept
at a reduced size: Sun-Hays photos are JPEGs, and downscaling them washes out compression
artefacts, giving cleaner targets and more variety of detail per pixel.

On a GPU one Python thread of Pillow work cannot keep up with the network (a step of 3 scales x 32
patches needs ~100 JPEG round trips), so ``batch_stream`` can spread the sampling over worker processes;
they send uint8 patches (a quarter of float32's bytes through the pipe) and a thread here converts them.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from shared.errors import Refusal
from worker.engine.base import grid_input
from worker.quality import bicubic_downscale
from worker.training.degradation import DegradationConfig, Degraded, Degrader

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
REDUCED_SIZE_FACTORS = (1.0, 0.6)


def find_images(folders: Sequence[Path]) -> list[Path]:
    """All image files under the given folders, sorted for reproducibility; symlinked folders are followed (a
    data folder assembled from links lost those folders silently)."""
    files = [Path(root) / name for folder in folders for root, _, names in os.walk(folder, followlinks=True)
             for name in names if Path(name).suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise FileNotFoundError(f"no training images under {', '.join(map(str, folders))}")
    return sorted(files)


class BenchmarkImageInTraining(Refusal, ValueError):
    """A training file is a benchmark image: the benchmarks would measure what the network memorised."""


def refuse_benchmark_images(files: Sequence[Path], benchmark_root: Path) -> None:
    """Raise if a training file lies in the benchmark folder (through a link), has a benchmark file's bytes (a
    renamed copy) or, of a benchmark image's size, its decoded pixels (a copy re-saved losslessly: PNG re-encoded,
    BMP, lossless WebP): the data README's one rule. Only files of a benchmark image's size are decoded."""
    root = Path(benchmark_root).resolve()
    benchmark = find_images([root]) if root.is_dir() else []
    by_bytes = {_digest(p): p for p in benchmark}
    by_pixels: dict[tuple[int, int], dict[str, Path]] = {}
    for p in benchmark:
        pixels = _pixels(p)
        by_pixels.setdefault(pixels.shape[:2], {})[_digest_pixels(pixels)] = p
    for path in files:
        inside = path.resolve().is_relative_to(root)
        twin = by_bytes.get(_digest(path))
        if not (inside or twin):
            with _open(path) as image:
                same_size = by_pixels.get((image.height, image.width))
            twin = same_size and same_size.get(_digest_pixels(_pixels(path)))
        if inside or twin:
            raise BenchmarkImageInTraining(f"{path} is the benchmark image {twin or path.resolve()}: never train on "
                                           "benchmark/ (../shared/data/README.md)")


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _pixels(path: Path) -> np.ndarray:
    with _open(path) as image:
        return np.asarray(image.convert("RGB"))


def _digest_pixels(pixels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()


def _open(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except (OSError, ValueError) as exc:
        raise UnreadableTrainingImage(f"cannot read the training image {path}: {exc}") from exc


def kept_sizes(width: int, height: int, min_side: int) -> list[tuple[float, int, int]]:
    """(factor, width, height) of each reduced size of an image that still holds an HR patch of ``min_side``: the
    one rule for which images training samples (an image with none is never seen)."""
    sizes = [(f, round(width * f), round(height * f)) for f in REDUCED_SIZE_FACTORS]
    return [(f, w, h) for f, w, h in sizes if min(w, h) >= min_side]


def used_files(files: Sequence[Path], min_side: int) -> list[Path]:
    """The files ``load_sources`` keeps (read from their headers, not decoded): what the run trains on, at
    ``min_side`` the smallest scale's HR patch."""
    return [path for path, side in _shortest_sides(files) if kept_sizes(side, side, min_side)]


def images_per_scale(files: Sequence[Path], scales: Sequence[int], lr_patch: int) -> dict[str, int]:
    """How many of ``files`` each scale samples (those holding its HR patch at some reduced size)."""
    sides = [side for _, side in _shortest_sides(files)]
    return {f"x{scale}": sum(1 for side in sides if kept_sizes(side, side, lr_patch * scale)) for scale in scales}


def _shortest_sides(files: Sequence[Path]) -> list[tuple[Path, int]]:
    """Each file's shorter side, read from its header."""
    sides = []
    for path in files:
        with _open(path) as image:
            sides.append((path, min(image.width, image.height)))
    return sides


def load_sources(files: Sequence[Path], min_side: int) -> list[np.ndarray]:
    """Decode every training image (RGB uint8) at each reduced size that still fits a patch."""
    sources = []
    for path in files:
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
        except (OSError, ValueError) as exc:  # named: the message alone did not say which of 570 files
            raise UnreadableTrainingImage(f"cannot read the training image {path}: {exc}") from exc
        for factor, w, h in kept_sizes(rgb.width, rgb.height, min_side):
            resized = rgb if factor == 1.0 else rgb.resize((w, h), Image.BICUBIC)
            sources.append(np.asarray(resized))
    if not sources:
        raise NoImageLargeEnough(f"no training image is at least {min_side} px a side (the LR patch times the "
                                 "scale): lower --lr-patch or add larger images")
    return sources


class UnreadableTrainingImage(Refusal, OSError):
    """A training file Pillow cannot decode."""


class NoImageLargeEnough(Refusal, ValueError):
    """No training image holds one HR patch."""


class PatchSampler:
    """Draws batches of (LR, strength, HR) float32 patches for every scale, area-weighted over the sources that
    hold that scale's HR patch.

    Why per scale: a source had to hold the largest scale's patch to be sampled at all, so with 64-px LR patches
    the T91 images under 256 px (72 of 91) trained no scale, though x2's 128-px patch fits most of them."""

    def __init__(self, sources: list[np.ndarray], scales: Sequence[int], lr_patch: int, batch: int, seed: int,
                 degradation: DegradationConfig | None = None):
        self.sources = sources
        self.scales = tuple(scales)
        self.lr_patch = lr_patch
        self.batch = batch
        self.rng = np.random.default_rng(seed)
        self.degrader = Degrader(degradation, np.random.default_rng(seed + 1)) if degradation else None
        self.eligible = {scale: self._eligible(lr_patch * scale) for scale in self.scales}

    def _eligible(self, hr_size: int) -> tuple[np.ndarray, np.ndarray]:
        """The sources holding an ``hr_size`` patch, and their area weights."""
        index = np.array([i for i, s in enumerate(self.sources) if min(s.shape[:2]) >= hr_size], dtype=np.int64)
        if index.size == 0:
            raise NoImageLargeEnough(f"no training image is at least {hr_size} px a side (the LR patch times the "
                                     "scale): lower --lr-patch or add larger images")
        areas = np.array([self.sources[i].shape[0] * self.sources[i].shape[1] for i in index], dtype=np.float64)
        return index, areas / areas.sum()

    def _pair(self, scale: int) -> tuple[Degraded, np.ndarray]:
        hr_size = self.lr_patch * scale
        index, weights = self.eligible[scale]
        src = self.sources[index[self.rng.choice(index.size, p=weights)]]
        h, w = src.shape[:2]
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

    def uint8_batch(self) -> Batch:
        """One batch per scale, in ``self.scales`` order, pixels as uint8 (what worker processes send)."""
        batch = Batch([], [], [], [])
        for scale in self.scales:
            pairs = [self._pair(scale) for _ in range(self.batch)]
            batch.lrs.append(np.stack([p[0].lr for p in pairs]))
            batch.strengths.append(np.array([[p[0].strength] for p in pairs], dtype=np.float32))
            batch.grids.append(np.array([grid_input(p[0].grid) for p in pairs], dtype=np.float32))
            batch.hrs.append(np.stack([p[1] for p in pairs]))
        return batch

    def batch_for_all_scales(self) -> Batch:
        """One batch per scale, in ``self.scales`` order, pixels as float32 in 0..1 (what the network takes)."""
        return to_float(self.uint8_batch())


class Batch(NamedTuple):
    """Per scale: LR patches, strength columns (N, 1), JPEG grid rows (N, 3: ``grid_input``), HR patches."""

    lrs: list[np.ndarray]
    strengths: list[np.ndarray]
    grids: list[np.ndarray]
    hrs: list[np.ndarray]


def to_float(batch: Batch) -> Batch:
    """uint8 pixels -> float32 in 0..1; strengths and grids are already float."""
    return batch._replace(lrs=[a.astype(np.float32) / 255.0 for a in batch.lrs],
                          hrs=[a.astype(np.float32) / 255.0 for a in batch.hrs])


@dataclass(frozen=True)
class SamplerSpec:
    """Everything a process needs to build its own ``PatchSampler`` (picklable: files, not decoded pixels)."""

    files: tuple[Path, ...]
    scales: tuple[int, ...]
    lr_patch: int
    batch: int
    seed: int
    degradation: DegradationConfig | None = None

    @property
    def min_side(self) -> int:
        """The HR patch side at the smallest scale: a source holding it trains that scale, and each larger one
        whose patch it holds too (``PatchSampler``)."""
        return self.lr_patch * min(self.scales)

    def build(self, stream: int = 0) -> PatchSampler:
        """A sampler over the decoded files; ``stream`` > 0 gives an independent random stream."""
        sources = load_sources(self.files, min_side=self.min_side)
        return PatchSampler(sources, self.scales, self.lr_patch, self.batch, seed=self.seed + 7919 * stream,
                            degradation=self.degradation)


class WorkerFailed(Refusal, RuntimeError):
    """A patch worker (process or thread) failed: training cannot go on without its batches (the message names
    the cause: an unreadable training file, no image large enough)."""


def _produce(spec: SamplerSpec, stream: int, out: multiprocessing.Queue) -> None:
    """A worker process: build batches until it is terminated; an error goes to the parent, which raises it."""
    try:
        sampler = spec.build(stream)
        while True:
            out.put(sampler.uint8_batch())
    except Exception as exc:  # reported to the parent, then this process ends
        out.put(WorkerFailed(f"patch worker {stream}: {type(exc).__name__}: {exc}"))


def batch_stream(spec: SamplerSpec, workers: int = 0, depth: int = 4) -> Iterator[Batch]:
    """Yield float batches built ahead of time so the model never waits on Pillow.

    ``workers`` = 0: one daemon thread here, batches in a reproducible order (the CPU default, where the
    model is the bottleneck). ``workers`` > 0: that many processes, each with its own random stream
    (``spawn``ed, so they inherit no accelerator runtime; each decodes the whole data set, ~0.5 GiB for the
    570 training images); batches arrive in whatever order they finish. A worker that fails or dies (killed
    for memory, say) raises ``WorkerFailed`` here instead of leaving training waiting for ever. Closing the
    generator stops the thread and the processes.
    """
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    processes: list = []
    if workers > 0:
        context = multiprocessing.get_context("spawn")
        raw = context.Queue(maxsize=depth * workers)
        processes = [context.Process(target=_produce, args=(spec, stream, raw), daemon=True,
                                     name=f"patch-sampler-{stream}") for stream in range(1, workers + 1)]
        for process in processes:
            process.start()

    def next_batch(sampler: PatchSampler | None) -> Batch | WorkerFailed | None:
        """The next batch, a worker's failure, or None when none came within a second."""
        if sampler is not None:
            return sampler.batch_for_all_scales()
        dead = [p for p in processes if p.exitcode is not None]
        if dead:  # its own error, if it could report one, is among the batches queued before it
            for _ in range(depth * workers + 1):
                try:
                    item = raw.get(timeout=1.0)
                except queue.Empty:
                    break
                if isinstance(item, WorkerFailed):
                    return item
            return WorkerFailed(f"{dead[0].name} exited with code {dead[0].exitcode}")
        try:
            item = raw.get(timeout=1.0)
        except queue.Empty:
            return None
        return item if isinstance(item, WorkerFailed) else to_float(item)

    def offer(item: Batch | WorkerFailed) -> None:
        while not stop.is_set():
            try:
                ready.put(item, timeout=1.0)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            sampler = spec.build() if workers <= 0 else None
            while not stop.is_set():
                item = next_batch(sampler)
                if item is not None:
                    offer(item)
                if isinstance(item, WorkerFailed):
                    return
        except Exception as exc:  # handed to the consumer, which raises it
            offer(WorkerFailed(f"patch sampler: {type(exc).__name__}: {exc}"))

    threading.Thread(target=produce, daemon=True, name="patch-batches").start()
    try:
        while True:
            item = ready.get()
            if isinstance(item, WorkerFailed):
                raise item
            yield item
    finally:  # closed, collected or failed: nothing more is needed from the workers
        stop.set()
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=5)
        if processes:
            raw.close()
