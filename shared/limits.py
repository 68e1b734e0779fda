"""Input and output limits, checked at submit so a job never fails late for a size reason."""

from __future__ import annotations

from dataclasses import dataclass

# The one list of output formats (the API schema, the CLI and the worker read it from here).
OUTPUT_FORMATS = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "tiff": "image/tiff"}
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp", "tiff": "tif"}
# Hard limits of the encoders: WebP stores 14-bit sides; JPEG stores 16-bit sides; PNG and TIFF 32-bit.
MAX_SIDE = {"png": 2**31 - 1, "jpeg": 65535, "webp": 16383, "tiff": 2**31 - 1}
SCALES = (2, 3, 4)


@dataclass(frozen=True)
class LimitViolation:
    code: str
    message: str


def output_pixel_cap(streamed: bool, max_output_pixels: int, max_whole_output_pixels: int) -> int:
    """The pixel limit of an output: streamed band by band (an exact x2/x3/x4 without alpha, whose memory does not
    grow with it) or made whole in memory (resampled sizes, x8, alpha)."""
    return max_output_pixels if streamed else min(max_output_pixels, max_whole_output_pixels)


def check_output(out_w: int, out_h: int, output_format: str, max_output_pixels: int) -> LimitViolation | None:
    """The reason an ``out_w`` x ``out_h`` output cannot be produced, or None."""
    side = MAX_SIDE[output_format]
    if max(out_w, out_h) > side:
        return LimitViolation("output_too_large",
                              f"{output_format} images cannot exceed {side} px a side; the output would be "
                              f"{out_w}x{out_h}")
    if out_w * out_h > max_output_pixels:
        return LimitViolation("output_too_large",
                              f"the output would have {out_w * out_h} pixels, more than the limit of "
                              f"{max_output_pixels}")
    return None
