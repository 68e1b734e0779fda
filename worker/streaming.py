"""Writing an output far larger than memory: band files joined and encoded by libvips, streaming.

Each band (``worker.bands``) is written as a raw libvips ``.v`` file as soon as it is computed; the
output is then encoded from the vertical join of those files with sequential access, so libvips holds a
few strips at a time instead of the whole image (a 20 MP x4 PNG no longer needs 1 GiB for its pixels).
libvips also writes what Pillow cannot: tiled BigTIFF past 4 GiB.

The encoding choices (default qualities, chroma subsampling, compression) are the ones of
``worker.imaging.encode``, read from the same constants, so a streamed output looks like a small one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from worker.imaging import JPEG_FULL_CHROMA_FROM, JPEG_QUALITY, PNG_COMPRESSION, WEBP_QUALITY
from worker.metadata import Metadata

BAND_SUFFIX = ".v"  # libvips' own uncompressed format: written and read without a codec
BIGTIFF_FROM_BYTES = 3 * 2**30  # a classic TIFF's offsets end at 4 GiB; leave room for tiles and tags
TIFF_TILE = 256


def _vips():
    import pyvips  # imported where used: the API and light workers never load libvips

    return pyvips


def write_band(pixels: np.ndarray, path: Path) -> None:
    """One band's uint8 pixels (H x W x 3, or H x W for greyscale) to a ``.v`` file."""
    _vips().Image.new_from_array(np.ascontiguousarray(pixels)).write_to_file(str(path))


def assemble(band_paths: list[Path], destination: Path, output_format: str, quality: int | None,
             meta: Metadata) -> tuple[int, int]:
    """Join band files top to bottom and encode them to ``destination``; returns (width, height)."""
    vips = _vips()
    bands = [vips.Image.new_from_file(str(p), access="sequential") for p in band_paths]
    image = _join(bands)
    image = image.copy(interpretation="b-w" if image.bands == 1 else "srgb")
    image = _with_metadata(image, meta)
    path = str(destination)
    if output_format == "jpeg":
        q = quality or JPEG_QUALITY
        image.jpegsave(path, Q=q, subsample_mode="off" if q >= JPEG_FULL_CHROMA_FROM else "on", optimize_coding=True)
    elif output_format == "webp":
        image.webpsave(path, Q=quality or WEBP_QUALITY, effort=4)
    elif output_format == "tiff":
        big = image.width * image.height * image.bands >= BIGTIFF_FROM_BYTES
        image.tiffsave(path, compression="deflate", predictor="horizontal", tile=True, tile_width=TIFF_TILE,
                       tile_height=TIFF_TILE, bigtiff=big)
    else:
        image.pngsave(path, compression=PNG_COMPRESSION)
    return image.width, image.height


def _join(bands: list):
    """Stack bands of different heights top to bottom (``arrayjoin`` would pad them to one size), as a
    balanced tree of joins so hundreds of bands stay shallow."""
    if len(bands) == 1:
        return bands[0]
    middle = len(bands) // 2
    return _join(bands[:middle]).join(_join(bands[middle:]), "vertical")


def _with_metadata(image, meta: Metadata):
    """EXIF, XMP, ICC and resolution as libvips metadata (written by each saver that can carry them)."""
    vips = _vips()
    image = image.copy()
    if meta.dpi:
        image = image.copy(xres=meta.dpi[0] / 25.4, yres=meta.dpi[1] / 25.4)  # libvips counts pixels per mm
    for field, blob in (("exif-data", meta.exif), ("xmp-data", meta.xmp), ("icc-profile-data", meta.icc)):
        if blob:
            image.set_type(vips.GValue.blob_type, field, blob)
    return image
