"""Input and output limits, checked at submit so a job never fails late for a size reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # sizing imports this module
    from shared.catalog import ModelInfo
    from shared.settings import Settings
    from shared.sizing import SizePlan, SizeRequest

# The one list of output formats (the API schema, the CLI and the worker read it from here).
OUTPUT_FORMATS = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "avif": "image/avif",
                  "tiff": "image/tiff"}
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp", "avif": "avif", "tiff": "tif"}
# The outputs that hold colour only (no grey pictures) and no resolution field of their own: a grey picture goes
# out as RGB, its DPI in EXIF (shared.metadata asks here, for both writers)
COLOUR_ONLY_FORMATS = ("webp", "avif")
# An output file name's suffix -> the format written under it (the CLI's single-file form)
SUFFIX_FORMATS = {**{f".{ext}": fmt for fmt, ext in EXTENSIONS.items()}, ".jpeg": "jpeg", ".tiff": "tiff"}
# Hard limits of the encoders: WebP stores 14-bit sides; JPEG's libjpeg refuses sides over 65500
# (JPEG_MAX_DIMENSION, though the format stores 16 bits); PNG and TIFF 32-bit. AVIF: 16384, the side libavif's
# readers (browsers among them) take by default.
MAX_SIDE = {"png": 2**31 - 1, "jpeg": 65500, "webp": 16383, "avif": 16384, "tiff": 2**31 - 1}
# Formats whose encoder holds the whole picture whatever writes it, with a pixel limit of their own: AV1 encodes a
# whole frame (40 MP took 0.88 GB and 53 s in libvips on 2 cores of a Xeon; docs/operations.md)
MAX_FORMAT_PIXELS = {"avif": 8192 * 8192}
SCALES = (2, 3, 4)
QUALITY_RANGE = (1, 100)  # JPEG/WebP/AVIF quality a job or the CLI may ask for
# The longest a request may hold its connection waiting for its job (``Prefer: wait=N``); the API's graceful
# shutdown must outlast it, or a rollout cuts such a request off after its job was made (cli.services).
MAX_WAIT_SECONDS = 60


# Sides below this are edge-padded before a network runs (and the output cropped): a 1x1 icon still upscales,
# but whole, never in bands.
MIN_TILED_SIDE = 8


def made_in_bands(planned: SizePlan, in_width: int, in_height: int, alpha: bool, tiled: bool) -> bool:
    """Whether an output can be made band by band, its memory not growing with it: the one test, asked at submit
    (which pixel limit applies) and by the worker (how it renders). A tiled network (bicubic has no tiles), one
    exact network scale (resampling and crops need the whole image), no alpha plane, and an image the tiles
    can cover."""
    return tiled and planned.is_exact(in_width, in_height) and not alpha and min(in_width, in_height) >= MIN_TILED_SIDE


@dataclass(frozen=True)
class LimitViolation:
    code: str
    message: str


def check_output(planned: SizePlan, in_width: int, in_height: int, alpha: bool, output_format: str,
                 settings: Settings, tiled: bool) -> LimitViolation | None:
    """The reason the output ``planned`` for an ``in_width`` x ``in_height`` input cannot be produced by a model
    that is ``tiled`` (a network) or not (bicubic), or None.

    Its pixel limit depends on how it is made (``made_in_bands``): streamed band by band up to
    ``max_output_pixels``, or whole in memory (resampled sizes, x8, alpha, bicubic, tiny inputs) up to
    ``max_whole_output_pixels`` too (a bicubic x4 of 576 MP passed as streamable and took 3.2 GB whole).
    """
    out_w, out_h = planned.width, planned.height
    max_output_pixels = settings.max_output_pixels
    if not made_in_bands(planned, in_width, in_height, alpha, tiled):
        max_output_pixels = min(max_output_pixels, settings.max_whole_output_pixels)
    violation = _past_limits(out_w, out_h, output_format, max_output_pixels)
    if violation:
        return violation
    if not planned.is_exact(in_width, in_height):
        # made whole in memory: the network's own output (x8 before resampling to x5) and the resampled image
        # are held too, not only the final one
        held = planned.held_pixels(in_width, in_height)
        if held > settings.max_whole_output_pixels:
            return LimitViolation("output_too_large",
                                  f"making this size holds a {held}-pixel image in memory (the network runs "
                                  f"x{planned.network_scale}, then the result is resampled), more than the limit "
                                  f"of {settings.max_whole_output_pixels}; ask for a smaller size")
    return None


def _past_limits(width: int | None, height: int | None, output_format: str,
                 max_output_pixels: int) -> LimitViolation | None:
    """The format's side limit, then the pixel limits (the format's own, then ``max_output_pixels``), for an output
    of these sides (None: not known yet)."""
    side = MAX_SIDE[output_format]
    if max(width or 0, height or 0) > side:
        return LimitViolation("output_too_large",
                              f"{output_format} images cannot exceed {side} px a side; the output would be "
                              f"{width or 'auto'}x{height or 'auto'}")
    format_pixels = MAX_FORMAT_PIXELS.get(output_format)
    if width and height and format_pixels and width * height > format_pixels:
        return LimitViolation("output_too_large",
                              f"{output_format} images are made up to {format_pixels} pixels (the encoder holds "
                              f"the whole picture); the output would have {width * height}: ask for a smaller "
                              "size or another format")
    if width and height and width * height > max_output_pixels:
        return LimitViolation("output_too_large",
                              f"the output would have {width * height} pixels, more than the limit of "
                              f"{max_output_pixels}")
    return None


def check_requested(size: SizeRequest, output_format: str, settings: Settings) -> LimitViolation | None:
    """What a size request alone rules out, before its image is known: the API's check of an ``image_url`` job at
    submit (``webp`` at a width of 20000 was accepted, its image fetched, and the job failed ``output_too_large``).
    A side that does not depend on the image (``SizeRequest.fixed_sides``) past the format's limit, or a box
    covered or filled past ``max_output_pixels`` (the larger limit: whether the smaller applies depends on the
    image); the rest is ``check_job``'s once the image is fetched."""
    width, height = size.fixed_sides()
    return _past_limits(width, height, output_format, settings.max_output_pixels)


def check_job(planned: SizePlan, in_width: int, in_height: int, alpha: bool, output_format: str,
              settings: Settings, model: ModelInfo) -> LimitViolation | None:
    """Whether ``model`` can make the output ``planned``: the one check the API asks at submit, the worker once an
    image_url is fetched and ``upscaler upscale`` for each file (which ran a network at a scale it has no head
    for into a KeyError, and made outputs the encoders refuse only after the whole inference). The scales first
    (code ``unsupported_scale``), then ``check_output``."""
    if not set(planned.chain) <= set(model.scales):
        needs = " then ".join(f"x{scale}" for scale in planned.chain)
        return LimitViolation("unsupported_scale", f"model {model.name!r} runs at scales "
                                                   f"{', '.join(f'x{scale}' for scale in model.scales)}; this size "
                                                   f"needs {needs}")
    return check_output(planned, in_width, in_height, alpha, output_format, settings, tiled=model.tiled)
