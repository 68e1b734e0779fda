"""Reading and checking an uploaded image: the content decides, never the file name."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError
from werkzeug.datastructures import FileStorage

from api.errors import ApiError

# MPO is how many cameras write JPEGs (a JPEG with extra frames, e.g. a depth map): stored as the JPEG it is,
# and the worker uses its first frame.
INPUT_FORMATS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "WEBP": "webp", "BMP": "bmp", "TIFF": "tiff",
                 "GIF": "gif"}
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "bmp": "image/bmp",
                 "tiff": "image/tiff", "gif": "image/gif"}


@dataclass(frozen=True)
class Upload:
    data: bytes
    format: str
    width: int
    height: int
    filename: str | None


def read_upload(file: FileStorage | None, max_input_pixels: int) -> Upload:
    """Sniff the image with Pillow (header only: nothing is decoded here) and check its size."""
    if file is None:
        raise ApiError("missing_image", "send the image as a multipart/form-data file field named 'image'")
    data = file.read()
    if not data:
        raise ApiError("missing_image", "the 'image' file is empty")
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = INPUT_FORMATS.get(image.format or "")
            width, height = image.size
            if kind is None:
                raise ApiError("unsupported_image", f"{image.format} images are not accepted; send "
                                                    f"{', '.join(sorted(INPUT_FORMATS.values()))}")
            if width * height > max_input_pixels:
                raise ApiError("image_too_large", f"the image has {width}x{height} = {width * height} pixels; the "
                                                  f"limit is {max_input_pixels}", limit=max_input_pixels)
            image.verify()
    except (UnidentifiedImageError, SyntaxError, OSError, ValueError) as exc:
        raise ApiError("unsupported_image", "the file is not a readable image (the content is checked, not the "
                                            "name)") from exc
    except Image.DecompressionBombError as exc:
        raise ApiError("image_too_large", str(exc)) from exc
    return Upload(data=data, format=kind, width=width, height=height,
                  filename=(file.filename or None) and file.filename[:255])
