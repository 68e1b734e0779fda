"""Metadata a photo studio expects to keep: EXIF (copyright, camera, dates), XMP, the ICC profile, and a DPI
scaled so the print size stays the same.

Read once when the input is decoded (after EXIF orientation has been applied to the pixels), adjusted to the
output (orientation reset, pixel dimensions updated, resolution scaled, the embedded thumbnail dropped: it
would show the old, small image) and written by every output format that can carry it: JPEG and WebP take
EXIF, XMP and ICC; PNG takes EXIF (eXIf), XMP (iTXt), ICC and its pHYs resolution. IPTC-IIM (JPEG APP13) is
not written by Pillow; XMP carries the same fields in current software.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from PIL import Image, PngImagePlugin

ORIENTATION, X_RESOLUTION, Y_RESOLUTION, RESOLUTION_UNIT = 0x0112, 0x011A, 0x011B, 0x0128
EXIF_IFD, PIXEL_X_DIMENSION, PIXEL_Y_DIMENSION = 0x8769, 0xA002, 0xA003
XMP_PNG_KEY = "XML:com.adobe.xmp"


@dataclass(frozen=True)
class Metadata:
    exif: bytes | None = None
    xmp: bytes | None = None
    icc: bytes | None = None
    dpi: tuple[float, float] | None = None


def read(opened: Image.Image, oriented: Image.Image, icc: bytes | None) -> Metadata:
    """What the input carries. ``oriented`` is the image after ``exif_transpose`` (its EXIF has no rotation)."""
    exif = oriented.getexif()
    xmp = opened.info.get("xmp") or opened.info.get(XMP_PNG_KEY)
    dpi = opened.info.get("dpi")
    if dpi is None and exif.get(X_RESOLUTION) and exif.get(RESOLUTION_UNIT, 2) == 2:
        dpi = (float(exif[X_RESOLUTION]), float(exif.get(Y_RESOLUTION, exif[X_RESOLUTION])))
    return Metadata(exif=exif.tobytes() if len(exif) else None,
                    xmp=xmp.encode() if isinstance(xmp, str) else xmp, icc=icc,
                    dpi=(float(dpi[0]), float(dpi[1])) if dpi and dpi[0] and dpi[1] else None)


def for_output(meta: Metadata, width: int, height: int, factor_x: float, factor_y: float,
               dpi: float | None = None) -> Metadata:
    """The metadata of a ``width`` x ``height`` result ``factor`` times larger than the input: same print size
    (DPI times the factor) unless ``dpi`` is given."""
    new_dpi = (dpi, dpi) if dpi else (meta.dpi[0] * factor_x, meta.dpi[1] * factor_y) if meta.dpi else None
    exif_bytes = meta.exif
    if meta.exif:
        exif = Image.Exif()
        exif.load(meta.exif)
        exif[ORIENTATION] = 1
        sub = exif.get_ifd(EXIF_IFD)
        if sub:
            sub[PIXEL_X_DIMENSION], sub[PIXEL_Y_DIMENSION] = width, height
        if new_dpi:
            exif[X_RESOLUTION], exif[Y_RESOLUTION], exif[RESOLUTION_UNIT] = new_dpi[0], new_dpi[1], 2
        exif_bytes = exif.tobytes()  # IFD0 and its sub-IFDs: the IFD1 thumbnail is not carried over
    return replace(meta, exif=exif_bytes, dpi=tuple(round(v, 3) for v in new_dpi) if new_dpi else None)


def _ifd0_only(exif_bytes: bytes) -> bytes:
    """EXIF without its sub-IFDs: libtiff (which Pillow uses for compressed TIFF) cannot write the Exif IFD
    pointer, so a compressed TIFF keeps IFD0 (copyright, artist, camera, resolution) but not the capture
    details. The libvips writer of issue 12 is the way to keep them too."""
    exif = Image.Exif()
    exif.load(exif_bytes)
    for pointer in (EXIF_IFD, 0x8825, 0xA005):  # Exif, GPS and Interop IFD pointers
        exif.pop(pointer, None)
    return exif.tobytes()


def save_options(meta: Metadata, output_format: str) -> dict:
    """Pillow ``save`` keyword arguments that write ``meta`` in ``output_format``."""
    options: dict = {}
    if meta.icc:
        options["icc_profile"] = meta.icc
    if meta.exif:
        options["exif"] = _ifd0_only(meta.exif) if output_format == "tiff" else meta.exif
    if meta.dpi and output_format in ("jpeg", "png", "tiff"):
        options["dpi"] = meta.dpi
    if meta.xmp:
        if output_format == "png":
            info = PngImagePlugin.PngInfo()
            info.add_itxt(XMP_PNG_KEY, meta.xmp.decode("utf-8", "replace"))
            options["pnginfo"] = info
        elif output_format in ("jpeg", "webp"):  # Pillow writes no XMP packet into TIFF
            options["xmp"] = meta.xmp
    return options
