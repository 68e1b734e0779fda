"""File in, file out through an engine: the core the worker pipeline, ``upscaler upscale`` and
``upscaler eval`` share, so all three measure and ship the same thing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from shared.sizing import SizePlan, SizeRequest, plan
from worker import metadata
from worker.engine.base import Engine, ProgressFn
from worker.engine.registry import EngineRegistry
from worker.engine.selection import Selection, select
from worker.imaging import compose, decode, encode
from worker.input_profile import profile_input


@dataclass(frozen=True)
class Rendered:
    width: int
    height: int
    timings: dict[str, float]
    selection: Selection
    plan: SizePlan
    resampled: bool  # the network's output was resized (or cropped) to reach the exact size

    def ran(self) -> dict:
        """What ran, for the job JSON: the network, its strength and why, and how the size was reached."""
        return {**self.selection.to_dict(), "network_scales": list(self.plan.chain), "resampled": self.resampled}


def enlarge(engine: Engine, rgb: np.ndarray, planned: SizePlan, strength: float | None,
            progress: ProgressFn | None) -> Image.Image:
    """Run the network scales of ``planned`` in turn, then resample to the exact size (and crop for cover)."""
    steps = len(planned.chain)
    image = Image.fromarray(rgb)
    for index, scale in enumerate(planned.chain):
        step_progress = None
        if progress:
            def step_progress(done: int, total: int, index: int = index) -> None:
                progress(index * total + done, steps * total)
        image = engine.upscale(rgb if index == 0 else np.asarray(image), scale, step_progress, strength=strength)
    if image.size != planned.resize_to:
        image = image.resize(planned.resize_to, Image.LANCZOS)
    if planned.crop:
        image = image.crop(planned.crop)
    if progress and not steps:
        progress(1, 1)
    return image


def render(source: Path, destination: Path, engines: EngineRegistry, model: str, size: SizeRequest,
           output_format: str, quality: int | None = None, progress: ProgressFn | None = None,
           checkpoint: Callable[[str], None] | None = None, denoise: float | None = None) -> Rendered:
    """Decode ``source``, choose the network for it (``model`` may be ``auto``), enlarge it to ``size``, encode
    it to ``destination``.

    ``checkpoint(stage)`` is called after inference and after encoding, so a caller can renew a
    lease or give up between the long stages.
    """
    timings: dict[str, float] = {}
    t = time.monotonic()
    decoded = decode(source)
    height, width = decoded.rgb.shape[:2]
    planned = plan(width, height, size)
    selection = select(model, denoise, profile_input(source, decoded.rgb), engines.catalog)
    engine = engines.get(selection.model)
    timings["decode_s"] = time.monotonic() - t
    t = time.monotonic()
    enlarged = enlarge(engine, decoded.rgb, planned, selection.strength, progress)
    timings["inference_s"] = time.monotonic() - t
    if checkpoint:
        checkpoint("inference")
    t = time.monotonic()
    image = compose(enlarged, decoded, planned)
    del enlarged, decoded.rgb
    meta = metadata.for_output(decoded.metadata, image.width, image.height, image.width / width, image.height / height)
    encode(image, output_format, destination, quality, meta)
    out_width, out_height = image.size
    del image
    timings["encode_s"] = time.monotonic() - t
    if checkpoint:
        checkpoint("encode")
    network = planned.network_scale
    resampled = planned.resize_to != (width * network, height * network) or planned.crop is not None
    return Rendered(out_width, out_height, {k: round(v, 4) for k, v in timings.items()}, selection, planned,
                    resampled)
