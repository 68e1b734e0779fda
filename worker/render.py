"""File in, file out through an engine: the core the worker pipeline and ``upscaler upscale`` share."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from worker.engine.base import Engine, ProgressFn
from worker.imaging import compose, decode, encode


@dataclass(frozen=True)
class Rendered:
    width: int
    height: int
    timings: dict[str, float]


def render(source: Path, destination: Path, engine: Engine, scale: int, output_format: str,
           quality: int | None = None, progress: ProgressFn | None = None,
           checkpoint: Callable[[str], None] | None = None) -> Rendered:
    """Decode ``source``, upscale it, and encode the result to ``destination``.

    ``checkpoint(stage)`` is called after inference and after encoding, so a caller can renew a
    lease or give up between the long stages.
    """
    timings: dict[str, float] = {}
    t = time.monotonic()
    decoded = decode(source)
    timings["decode_s"] = time.monotonic() - t
    t = time.monotonic()
    upscaled = engine.upscale(decoded.rgb, scale, progress)
    timings["inference_s"] = time.monotonic() - t
    if checkpoint:
        checkpoint("inference")
    t = time.monotonic()
    image = compose(upscaled, decoded)
    del upscaled, decoded.rgb
    encode(image, output_format, destination, quality, decoded.icc_profile)
    width, height = image.size
    del image
    timings["encode_s"] = time.monotonic() - t
    if checkpoint:
        checkpoint("encode")
    return Rendered(width, height, {k: round(v, 4) for k, v in timings.items()})
