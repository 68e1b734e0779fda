"""Which input images are accepted, and how one is sniffed: by its content, never its name.

One place for the API (uploads) and the worker (images fetched from ``image_url``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

# MPO is how many cameras write JPEGs (a JPEG with extra frames, e.g. a depth map): stored as the JPEG it is,
# and the worker uses its first frame.
INPUT_FORMATS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "WEBP": "webp", "BMP": "bmp", "TIFF": "tiff",
                 "GIF": "gif"}
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "bmp": "image/bmp",
                 "tiff": "image/tiff", "gif": "image/gif"}


class ImageRejected(ValueError):
    """Why bytes are not an acceptable input; ``code`` is a stable error code (docs/errors.md)."""

    def __init__(self, code: str, message: str, **extra):
        super().__init__(message)
        self.code = code
        self.extra = extra


@dataclass(frozen=True)
class Sniffed:
    format: str
    width: int
    height: int
    alpha: bool = False  # a transparency channel (or palette transparency): its output is made whole


def sniff(data: bytes, max_input_pixels: int) -> Sniffed:
    """Check an image's header (nothing is decoded here): a supported format within the pixel limit."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = INPUT_FORMATS.get(image.format or "")
            width, height = image.size
            alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
            if kind is None:
                raise ImageRejected("unsupported_image", f"{image.format} images are not accepted; send "
                                                         f"{', '.join(sorted(set(INPUT_FORMATS.values())))}")
            if width * height > max_input_pixels:
                raise ImageRejected("image_too_large", f"the image has {width}x{height} = {width * height} pixels; "
                                                       f"the limit is {max_input_pixels}", limit=max_input_pixels)
            image.verify()
    except (UnidentifiedImageError, SyntaxError, OSError, ValueError) as exc:
        if isinstance(exc, ImageRejected):
            raise
        raise ImageRejected("unsupported_image", "the file is not a readable image (the content is checked, not "
                                                 "the name)") from exc
    except Image.DecompressionBombError as exc:
        raise ImageRejected("image_too_large", str(exc)) from exc
    return Sniffed(kind, width, height, alpha)
