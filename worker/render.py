"""File in, file out through an engine: the core the worker pipeline, ``upscaler upscale`` and
``upscaler eval`` share, so all three measure and ship the same thing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from worker import metadata
from worker.engine.base import ProgressFn
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


def render(source: Path, destination: Path, engines: EngineRegistry, model: str, scale: int, output_format: str,
           quality: int | None = None, progress: ProgressFn | None = None,
           checkpoint: Callable[[str], None] | None = None, denoise: float | None = None) -> Rendered:
    """Decode ``source``, choose the network for it (``model`` may be ``auto``), upscale, encode to ``destination``.

    ``checkpoint(stage)`` is called after inference and after encoding, so a caller can renew a
    lease or give up between the long stages.
    """
    timings: dict[str, float] = {}
    t = time.monotonic()
    decoded = decode(source)
    selection = select(model, denoise, profile_input(source, decoded.rgb), engines.catalog)
    engine = engines.get(selection.model)
    timings["decode_s"] = time.monotonic() - t
    t = time.monotonic()
    upscaled = engine.upscale(decoded.rgb, scale, progress, strength=selection.strength)
    timings["inference_s"] = time.monotonic() - t
    if checkpoint:
        checkpoint("inference")
    t = time.monotonic()
    image = compose(upscaled, decoded)
    height, width = decoded.rgb.shape[:2]
    del upscaled, decoded.rgb
    meta = metadata.for_output(decoded.metadata, image.width, image.height, image.width / width, image.height / height)
    encode(image, output_format, destination, quality, meta)
    width, height = image.size
    del image
    timings["encode_s"] = time.monotonic() - t
    if checkpoint:
        checkpoint("encode")
    return Rendered(width, height, {k: round(v, 4) for k, v in timings.items()}, selection)
