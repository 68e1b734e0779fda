"""Reading and checking an uploaded image: the content decides, never the file name (``shared.formats``)."""

from __future__ import annotations

from dataclasses import dataclass

from werkzeug.datastructures import FileStorage

from api.errors import ApiError
from shared.formats import ImageRejected, sniff


@dataclass(frozen=True)
class Upload:
    data: bytes
    format: str
    width: int
    height: int
    filename: str | None
    alpha: bool = False


def chosen_file(files) -> FileStorage | None:
    """The request's ``image`` part, or None where it holds nothing: an HTML form (or a generic client) sends its
    file input even when no file was picked, with an empty name and no bytes, and beside an ``image_url`` that
    was refused as "both"."""
    part = files.get("image")
    if part is None or part.filename:
        return part
    empty = not part.stream.read(1)
    part.stream.seek(0)
    return None if empty else part


def read_upload(file: FileStorage | None, max_input_pixels: int) -> Upload:
    """Sniff the image with Pillow (header only: nothing is decoded here) and check its size."""
    if file is None:
        raise ApiError("missing_image", "send the image as a multipart/form-data file field named 'image', or its "
                                        "address as 'image_url'")
    data = file.read()
    if not data:
        raise ApiError("missing_image", "the 'image' file is empty")
    try:
        found = sniff(data, max_input_pixels)
    except ImageRejected as exc:
        raise ApiError(exc.code, str(exc), **exc.extra) from exc
    return Upload(data=data, format=found.format, width=found.width, height=found.height,
                  filename=_shown_name(file.filename), alpha=found.alpha)


def _shown_name(filename: str | None) -> str | None:
    """The upload's file name as the job shows it: printable characters only (a NUL failed the insert on
    PostgreSQL, answered as a database outage; a newline or escape would reach logs and pages), 255 at most."""
    shown = "".join(c for c in filename or "" if c.isprintable())[:255]
    return shown or None
