"""File in, file out through an engine: the core the worker pipeline, ``upscaler upscale`` and
``upscaler eval`` share, so all three measure and ship the same thing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from shared.catalog import BICUBIC, RESAMPLED
from shared.limits import made_in_bands
from shared.settings import Settings
from shared.sizing import SizePlan, SizeRequest, plan
from worker import metadata
from worker.bands import Band, plan_bands
from worker.engine.base import Condition, Engine, ProgressFn
from worker.engine.registry import EngineRegistry
from worker.engine.selection import Selection, select
from worker.imaging import DecodedImage, compose, decode, encode, output_pixels
from worker.input_profile import profile_input
from worker.metadata import Metadata
from worker.scratch import scratch_beside
from worker.streaming import DEEP_FORMATS, RowFile, encode_rows


@dataclass(frozen=True)
class Rendered:
    width: int
    height: int
    timings: dict[str, float]
    selection: Selection
    plan: SizePlan
    resampled: bool  # the network's output was resized (or cropped) to reach the exact size
    precision: str | None  # what the network computed in (None: bicubic)
    bands: int = 0  # how many bands the output was streamed in (0: whole in memory)
    bits: int = 8  # per sample, as written

    def ran(self) -> dict:
        return ran_record(self.selection, self.plan.chain, self.resampled, self.precision, self.bands, self.bits)


def ran_record(selection: Selection, chain: tuple[int, ...], resampled: bool, precision: str | None, bands: int,
               bits: int) -> dict:
    """What ran, for the job JSON (``ran``): the network, its strength and why, how the size was reached, in which
    precision, in how many bands and at how many bits per sample."""
    return {**selection.to_dict(), "network_scales": list(chain), "resampled": resampled, "precision": precision,
            "bands": bands, "bits": bits}


def enlarge(engine: Engine, rgb: np.ndarray, planned: SizePlan, condition: Condition,
            progress: ProgressFn | None) -> Image.Image:
    """Run the network scales of ``planned`` in turn, then resample to the exact size (and crop for cover).

    Only the first pass sees the file's pixels, so only it is told their JPEG grid."""
    steps = len(planned.chain)
    image = Image.fromarray(rgb)
    for index, scale in enumerate(planned.chain):
        step_progress = None
        if progress:
            def step_progress(done: int, total: int, index: int = index) -> None:
                progress(index * total + done, steps * total)
        image = engine.upscale(rgb if index == 0 else np.asarray(image), scale, step_progress,
                               condition if index == 0 else replace(condition, jpeg_grid=None))
    if image.size != planned.resize_to:
        # a restore's x2 is reduced by Pillow's bicubic, the kernel the network learnt to invert: Lanczos gave
        # back 1.1 dB less of the JPEG q90 gain (docs/model.md); between network scales Lanczos is as good or better
        image = image.resize(planned.resize_to, Image.BICUBIC if planned.restore else Image.LANCZOS)
    if planned.crop:
        image = image.crop(planned.crop)
    if progress and not steps:
        progress(1, 1)
    return image


def bandable(engine: Engine, decoded: DecodedImage, planned: SizePlan) -> bool:
    """Whether the output can be made band by band: a network with tiles, one exact network scale (resampling
    and crops need the whole image), no alpha plane, an image the tiles can cover."""
    height, width = decoded.rgb.shape[:2]
    return made_in_bands(planned, width, height, decoded.alpha is not None, hasattr(engine, "band_cuts"))


def streamable(engine: Engine, decoded: DecodedImage, planned: SizePlan, band_pixels: int | None) -> bool:
    """Whether the output is written band by band (bounded memory) instead of whole: bandable and more than
    one band's worth."""
    return (band_pixels is not None and bandable(engine, decoded, planned)
            and planned.resize_to[0] * planned.resize_to[1] > band_pixels)


def keep_depth(decoded: DecodedImage, output_format: str, bandable: bool) -> DecodedImage:
    """16 bits per sample stay only where they can come out: a PNG or TIFF written band by band by libvips
    (Pillow writes no 16-bit colour, JPEG and WebP hold 8 bits); anywhere else the input becomes 8-bit."""
    return decoded if decoded.deep and output_format in DEEP_FORMATS and bandable else decoded.as_8bit()


def scaled_metadata(decoded: DecodedImage, scale: int, dpi: int | None = None) -> Metadata:
    """The input's metadata for an output exactly ``scale`` times its size (at ``dpi`` if given)."""
    height, width = decoded.rgb.shape[:2]
    return metadata.for_output(decoded.metadata, width * scale, height * scale, scale, scale, dpi)


def band_pixels(engine: Engine, decoded: DecodedImage, scale: int, rows: tuple[int, int], condition: Condition,
                progress: ProgressFn | None = None) -> np.ndarray:
    """One band's output pixels (LR ``rows`` from ``band_cuts``), in the output's mode (grey stays grey)."""
    return output_pixels(engine.upscale_rows(decoded.rgb, scale, rows, progress, condition), decoded.greyscale)


def render_bands(engine: Engine, decoded: DecodedImage, scale: int, bands: list[Band], condition: Condition,
                 rows: RowFile, progress: ProgressFn | None = None) -> None:
    """Compute ``bands`` one at a time, appending their rows to ``rows``."""
    height = decoded.rgb.shape[0]
    for band in bands:
        band_progress = None
        if progress:
            def band_progress(done: int, total: int, band: Band = band) -> None:
                progress(band.y0 * total + done * (band.y1 - band.y0), height * total)
        rows.append(band_pixels(engine, decoded, scale, (band.y0, band.y1), condition, band_progress))


def output_rows(folder: Path, decoded: DecodedImage, scale: int) -> RowFile:
    """The row file a ``scale`` times larger output of ``decoded`` is gathered in (``worker.streaming``)."""
    height, width = decoded.rgb.shape[:2]
    return RowFile(folder / "rows.tif", width * scale, height * scale, 1 if decoded.greyscale else 3, scale,
                   bits=decoded.bits)


@dataclass
class Prepared:
    """A decoded input with its plan: which network runs at which strength, and the size it makes."""

    decoded: DecodedImage
    planned: SizePlan
    selection: Selection
    engine: Engine
    timings: dict[str, float]


def prepare(source: Path, engines: EngineRegistry, model: str, size: SizeRequest,
            denoise: float | None = None) -> Prepared:
    """Decode ``source``, plan its size and choose the network for it (``model`` may be ``auto``)."""
    t = time.monotonic()
    decoded = decode(source)
    height, width = decoded.rgb.shape[:2]
    planned = plan(width, height, size)
    alpha = None if decoded.alpha is None else np.asarray(decoded.alpha)
    selection = select(model, denoise, profile_input(source, decoded.as_8bit().rgb, alpha), engines.catalog)
    if not planned.chain:
        planned, selection = _at_most_its_own_size(planned, selection, denoise, width, height, engines)
    engine = engines.get(BICUBIC if selection.model == RESAMPLED else selection.model)
    return Prepared(decoded, planned, selection, engine, {"decode_s": time.monotonic() - t})


# An input asked at its own size is restored from this strength up (auto's JPEG of quality 90 is 0.14, of 95 0.07):
# its x2 reduced back gains 1.1-1.6 dB over the file at JPEG q50..q90, and 4 on noisy files, but on JPEGs of q95 it
# lost on 4 of 16 photos and a clean file's pixels are already what is wanted (docs/model.md, "At its own size").
RESTORE_FROM_STRENGTH = 0.1


def _at_most_its_own_size(planned: SizePlan, selection: Selection, denoise: float | None, width: int, height: int,
                          engines: EngineRegistry) -> tuple[SizePlan, Selection]:
    """How a size no network enlarges to is made: a damaged input asked at its own size is restored by the robust
    network (at x2, then reduced back), any other one is resampled only, and said so, not the network that would
    have run."""
    asked = denoise is not None and denoise > 0
    damaged = selection.strength is not None and (asked or selection.strength >= RESTORE_FROM_STRENGTH)
    if damaged and planned.resize_to == (width, height):
        restored = planned.restored()
        fits = restored.held_pixels(width, height) <= engines.settings.max_whole_output_pixels
        if fits and set(restored.chain) <= set(engines.catalog[selection.model].scales):
            return restored, replace(selection, reason=f"{selection.reason}; restored at its own size (x2, reduced)")
    why = "no enlargement asked" if not damaged else (
        "smaller than the input asked" if planned.resize_to != (width, height) else "too large to restore in memory")
    return planned, Selection(RESAMPLED, None, f"{why}: resampled only (no network, no restoration)",
                              selection.profile)


def render(source: Path, destination: Path, engines: EngineRegistry, model: str, size: SizeRequest,
           output_format: str, quality: int | None = None, progress: ProgressFn | None = None,
           checkpoint: Callable[[str], None] | None = None, denoise: float | None = None,
           band_pixels: int | None = None, dpi: int | None = None) -> Rendered:
    """Decode ``source``, choose the network for it (``model`` may be ``auto``), enlarge it to ``size``, encode
    it to ``destination``."""
    return finish(prepare(source, engines, model, size, denoise), destination, output_format, quality, progress,
                  checkpoint, band_pixels, dpi)


def finish(prepared: Prepared, destination: Path, output_format: str, quality: int | None = None,
           progress: ProgressFn | None = None, checkpoint: Callable[[str], None] | None = None,
           band_pixels: int | None = None, dpi: int | None = None) -> Rendered:
    """Enlarge a prepared input and encode it to ``destination``.

    ``checkpoint(stage)`` is called after inference and after encoding, so a caller can renew a
    lease or give up between the long stages. With ``band_pixels``, an output larger than that is computed
    in bands of at most that many pixels and streamed to the file (``worker.streaming``). ``dpi`` is the
    resolution written into the output (default: the input's, times the enlargement).
    """
    planned, selection, engine = prepared.planned, prepared.selection, prepared.engine
    decoded = keep_depth(prepared.decoded, output_format, bandable(engine, prepared.decoded, planned))
    timings = dict(prepared.timings)
    height, width = decoded.rgb.shape[:2]
    if decoded.deep or streamable(engine, decoded, planned, band_pixels):
        return _render_streaming(engine, decoded, planned, selection, destination, output_format, quality, progress,
                                 checkpoint, band_pixels or Settings.band_output_pixels, timings, dpi)
    t = time.monotonic()
    enlarged = enlarge(engine, decoded.rgb, planned, selection.condition, progress)
    timings["inference_s"] = time.monotonic() - t
    if checkpoint:
        checkpoint("inference")
    t = time.monotonic()
    image = compose(enlarged, decoded, planned)
    del enlarged, decoded.rgb
    # the scale the pixels were drawn at, per axis: a cover crop cuts the picture, it does not scale it (after
    # the crop, output / input said 937.5 dpi across and 1250 down for a square cut of a 4:3 photo)
    meta = metadata.for_output(decoded.metadata, image.width, image.height, planned.resize_to[0] / width,
                               planned.resize_to[1] / height, dpi)
    encode(image, output_format, destination, quality, meta)
    out_width, out_height = image.size
    del image
    timings["encode_s"] = time.monotonic() - t
    if checkpoint:
        checkpoint("encode")
    network = planned.network_scale
    resampled = planned.resize_to != (width * network, height * network) or planned.crop is not None
    return Rendered(out_width, out_height, {k: round(v, 4) for k, v in timings.items()}, selection, planned,
                    resampled, engine.precision)


def _render_streaming(engine: Engine, decoded: DecodedImage, planned: SizePlan, selection: Selection,
                      destination: Path, output_format: str, quality: int | None, progress: ProgressFn | None,
                      checkpoint: Callable[[str], None] | None, band_pixels: int,
                      timings: dict[str, float], dpi: int | None) -> Rendered:
    height, width = decoded.rgb.shape[:2]
    scale = planned.chain[0]
    bands = plan_bands(engine.band_cuts(height, width), width, scale, band_pixels)
    meta = scaled_metadata(decoded, scale, dpi)
    with scratch_beside(destination, "bands") as folder:
        t = time.monotonic()
        rows = output_rows(Path(folder), decoded, scale)
        render_bands(engine, decoded, scale, bands, selection.condition, rows, progress)
        rows.close()
        timings["inference_s"] = time.monotonic() - t
        if checkpoint:
            checkpoint("inference")
        t = time.monotonic()
        out_width, out_height = encode_rows(rows.path, destination, output_format, quality, meta)
        timings["encode_s"] = time.monotonic() - t
    if checkpoint:
        checkpoint("encode")
    return Rendered(out_width, out_height, {k: round(v, 4) for k, v in timings.items()}, selection, planned,
                    resampled=False, precision=engine.precision, bands=len(bands), bits=decoded.bits)
