"""Metadata a photo studio expects to keep: EXIF (copyright, camera, dates), XMP, the ICC profile, and a DPI
scaled so the print size stays the same. Not where the photo was taken: the GPS position (EXIF's GPS directory,
XMP's ``exif:GPS*`` and a GeoTIFF's georeferencing) is left out of every result, as hosted upscalers do, since a
shop publishing an enlarged phone photo would publish where it was shot.

Read once when the input is decoded (after EXIF orientation has been applied to the pixels), adjusted to the
output (orientation reset, pixel dimensions updated, resolution scaled, the embedded thumbnail dropped: it
would show the old, small image) and written by every output format that can carry it: JPEG and WebP take
EXIF, XMP and ICC; PNG takes EXIF (eXIf), XMP (iTXt), ICC and its pHYs resolution; TIFF its IFD0, XMP (tag 700)
and ICC. IPTC-IIM (JPEG APP13) is not written by Pillow; XMP carries the same fields in current software.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace

from PIL import Image, PngImagePlugin

from shared.formats import raw_profile
from shared.limits import COLOUR_ONLY_FORMATS

log = logging.getLogger(__name__)

ORIENTATION, X_RESOLUTION, Y_RESOLUTION, RESOLUTION_UNIT = 0x0112, 0x011A, 0x011B, 0x0128
EXIF_IFD, PIXEL_X_DIMENSION, PIXEL_Y_DIMENSION, GPS_IFD = 0x8769, 0xA002, 0xA003, 0x8825
TURNED_A_QUARTER = frozenset({5, 6, 7, 8})  # EXIF orientations that swap the stored width and height
# XMP properties that describe the input's pixels or its place: the EXIF written with the result says the
# result's size and resolution (readers such as Lightroom take XMP's first, so a 4x result read as the input's
# size, printed 4x too small), and the position is not carried at all, in any namespace: a drone's own (DJI's
# drone-dji:GpsLatitude, AbsoluteAltitude) came through when only exif:GPS* was dropped.
XMP_DROPPED = re.compile(
    rb"tiff:(?:ImageWidth|ImageLength|XResolution|YResolution|ResolutionUnit|Orientation)"
    rb"|exif:(?:PixelXDimension|PixelYDimension)"
    rb"|[A-Za-z][\w.-]*:(?:GPS[A-Za-z]*|Gps[A-Za-z]*|Latitude|Longitude|AbsoluteAltitude)")
_XMP_ATTRIBUTE = re.compile(rb'\s(' + XMP_DROPPED.pattern + rb')\s*=\s*(?:"[^"]*"|\'[^\']*\')')
_XMP_ELEMENT = re.compile(rb"<(" + XMP_DROPPED.pattern + rb")(?:\s[^>]*)?(?:/>|>.*?</\1\s*>)", re.DOTALL)
XMP_PNG_KEY = "XML:com.adobe.xmp"
XMP_TIFF_TAG = 700
UNSTATED_DPI = 72.0  # what readers take a file that states no resolution for
# The most a JPEG's APP1 segment holds: EXIF (with its "Exif\0\0" header), and XMP after its 29-byte namespace.
JPEG_MAX_EXIF, JPEG_MAX_XMP = 65533, 65533 - 29


@dataclass(frozen=True)
class Metadata:
    exif: bytes | None = None
    xmp: bytes | None = None
    icc: bytes | None = None
    dpi: tuple[float, float] | None = None


# Tags of IFD0 that describe how the input file laid out its pixels, or an application's own data, not the
# picture: a TIFF's EXIF is its own directory, so its width, strips and compression came along, and written into a
# TIFF result they said the input's width (a 400 px result read as 100 px of scrambled rows). The ICC profile
# (34675) and XMP (700) are carried on their own. Some cameras write 256/257 into a JPEG's EXIF too.
DROPPED_TAGS = frozenset({
    254, 255,  # (New)SubfileType
    256, 257, 258, 259, 262, 266,  # ImageWidth, ImageLength, BitsPerSample, Compression, Photometric, FillOrder
    273, 277, 278, 279, 284,  # StripOffsets, SamplesPerPixel, RowsPerStrip, StripByteCounts, PlanarConfiguration
    317, 320, 322, 323, 324, 325, 338, 339, 340, 341,  # Predictor, ColorMap, tiles, ExtraSamples, sample format/range
    513, 514, 530, 532,  # JPEG thumbnail pointers, YCbCrSubSampling, ReferenceBlackWhite
    700, 34675,  # XMP and ICC: Metadata's own fields
    # An application's private copy of the document, not the picture: Photoshop's image resources (its own
    # resolution, which then disagreed with the scaled one, and the input's thumbnail) and its layers (hundreds
    # of kB: a JPEG's EXIF no longer fit, and all of it was dropped, copyright and camera too), Print Image
    # Matching's settings, and the DNG private data. IPTC (33723) is the picture's caption and rights: kept.
    34377, 37724, 50341, 50740,
    # GeoTIFF's georeferencing: where on the Earth the pixels lie (a drone's orthophoto, an aerial scan), so the
    # place the picture shows, which no result carries (above), and stated per input pixel: ModelPixelScale,
    # ModelTiepoint, ModelTransformation and the GeoKey directory with its parameters. Kept, they went into every
    # result made in memory, the position whole (a streamed one dropped them).
    33550, 33922, 34264, 34735, 34736, 34737,
})


def read(opened: Image.Image, oriented: Image.Image, icc: bytes | None, orientation: int) -> Metadata:
    """What the input carries. ``oriented`` is the image after ``exif_transpose`` (its EXIF has no rotation);
    ``orientation`` the EXIF orientation the file had (read before the pixels were turned)."""
    exif = oriented.getexif()
    for tag in DROPPED_TAGS & set(exif):
        del exif[tag]
    xmp = opened.info.get("xmp") or opened.info.get(XMP_PNG_KEY)
    if not xmp and isinstance(opened.info.get("Raw profile type xmp"), str):  # as ImageMagick writes it in a PNG
        xmp = raw_profile(opened.info["Raw profile type xmp"])
    dpi = stated_dpi(opened, exif)
    if dpi and orientation in TURNED_A_QUARTER:  # stated for the stored, unturned pixels
        dpi = (dpi[1], dpi[0])
    return Metadata(exif=exif.tobytes() if len(exif) else None,
                    xmp=xmp.encode() if isinstance(xmp, str) else xmp, icc=icc,
                    dpi=(float(dpi[0]), float(dpi[1])) if dpi and dpi[0] and dpi[1] else None)


def stated_dpi(opened: Image.Image, exif: Image.Exif) -> tuple[float, float] | None:
    """The resolution the file states, None where it states none: a PNG's pHYs, a JPEG's (or MPO's) JFIF density in
    dots per inch or cm, a BMP's header, else EXIF's (a TIFF's own tags) in inches or cm. Pillow's ``info["dpi"]``
    alone is not that: it says 72 for a JPEG whose EXIF has no resolution and 1 for a TIFF with no resolution
    tags, and those were scaled into the output (a TIFF at x2 said 2 dpi: a 32-inch print of a 64 px picture)."""
    stated = opened.info.get("dpi")
    if opened.format == "PNG" and stated:  # pHYs; without one, its eXIf's below
        return stated
    if opened.format in ("JPEG", "MPO") and opened.info.get("jfif_unit") in (1, 2):  # MPO: many cameras' JPEGs
        return stated
    if opened.format == "BMP" and stated and all(stated):  # its header's pixels per metre (0: none stated)
        return stated
    unit = exif.get(RESOLUTION_UNIT, 2)  # TIFF and EXIF: inches unless said otherwise
    if exif.get(X_RESOLUTION) and unit in (2, 3):
        per_inch = 2.54 if unit == 3 else 1.0
        x = float(exif[X_RESOLUTION])
        return x * per_inch, float(exif.get(Y_RESOLUTION) or x) * per_inch
    return None


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
        exif.pop(GPS_IFD, None)
        sub = exif.get_ifd(EXIF_IFD)
        if sub:
            sub[PIXEL_X_DIMENSION], sub[PIXEL_Y_DIMENSION] = width, height
        if new_dpi:
            exif[X_RESOLUTION], exif[Y_RESOLUTION], exif[RESOLUTION_UNIT] = new_dpi[0], new_dpi[1], 2
        exif_bytes = exif.tobytes()  # IFD0 and its sub-IFDs: the IFD1 thumbnail is not carried over
    return replace(meta, exif=exif_bytes, xmp=_xmp_for_output(meta.xmp) if meta.xmp else None,
                   dpi=tuple(round(v, 3) for v in new_dpi) if new_dpi else None)


def _xmp_for_output(xmp: bytes) -> bytes:
    """The XMP packet without the properties ``XMP_DROPPED`` names, written as attributes or as elements; the
    rest (rights, captions, keywords, edit history) as it was."""
    return _XMP_ELEMENT.sub(b"", _XMP_ATTRIBUTE.sub(b"", xmp))


def _ifd0(exif_bytes: bytes) -> Image.Exif:
    """EXIF without its sub-IFDs: libtiff (which Pillow uses for compressed TIFF) cannot write the Exif IFD
    pointer, so a compressed TIFF keeps IFD0 (copyright, artist, camera, resolution) but not the capture
    details; and a JPEG whose EXIF is too large keeps at least these."""
    exif = Image.Exif()
    exif.load(exif_bytes)
    for pointer in (EXIF_IFD, 0x8825, 0xA005):  # Exif, GPS and Interop IFD pointers
        exif.pop(pointer, None)
    return exif


def icc_colour_space(icc: bytes) -> bytes:
    """The colour space an ICC profile's header names (``RGB``, ``GRAY``, ``CMYK``...)."""
    return icc[16:20].strip() if len(icc) >= 20 else b""


def turns_grey_to_srgb(meta: Metadata, output_format: str, grey: bool) -> bool:
    """Whether a grey picture goes out in sRGB through its own grey profile: a WebP (or AVIF, as written here) holds
    colour only, and a grey profile cannot describe its pixels (dropped alone, a "Gray Gamma 1.8" photo came out 18
    levels darker). Both writers ask here, and each turns the pixels with its own library."""
    return output_format in COLOUR_ONLY_FORMATS and grey and bool(meta.icc) and icc_colour_space(meta.icc) == b"GRAY"


def for_format(meta: Metadata, output_format: str) -> Metadata:
    """What ``output_format`` can carry of ``meta``; both writers (in memory and streamed) ask here, so a block
    is kept or left out alike by both.

    A JPEG segment holds 64 kB: a larger EXIF (a camera's maker notes) keeps its IFD0 (copyright, artist, camera,
    resolution), a larger XMP (Photoshop's document history) is left out, either logged: the in-memory writer
    failed the finished job over it and libvips dropped it silently. An input stating no resolution gets the 72
    dpi readers assume (libvips wrote its default 25.4: an 8000 px print measured 315 in). A WebP or an AVIF holds
    no resolution of its own, so its DPI travels in a minimal EXIF where the input had none."""
    if output_format == "jpeg":
        if meta.exif and len(meta.exif) > JPEG_MAX_EXIF:
            smaller = _ifd0(meta.exif).tobytes()
            log.warning("EXIF of %d bytes does not fit a JPEG segment; keeping %s", len(meta.exif),
                        "its IFD0" if len(smaller) <= JPEG_MAX_EXIF else "none of it")
            meta = replace(meta, exif=smaller if len(smaller) <= JPEG_MAX_EXIF else None)
        if meta.xmp and len(meta.xmp) > JPEG_MAX_XMP:
            log.warning("XMP of %d bytes does not fit a JPEG segment; left out", len(meta.xmp))
            meta = replace(meta, xmp=None)
    if meta.dpi is None:  # libvips always writes one (its default 25.4 dpi), Pillow's TIFF 1 per no unit: say 72
        meta = replace(meta, dpi=(UNSTATED_DPI, UNSTATED_DPI))
    if output_format in COLOUR_ONLY_FORMATS and not meta.exif:
        exif = Image.Exif()
        exif[X_RESOLUTION], exif[Y_RESOLUTION], exif[RESOLUTION_UNIT] = meta.dpi[0], meta.dpi[1], 2
        meta = replace(meta, exif=exif.tobytes())
    return meta


def save_options(meta: Metadata, output_format: str) -> dict:
    """Pillow ``save`` keyword arguments that write ``meta`` in ``output_format``."""
    options: dict = {}
    if meta.icc:
        options["icc_profile"] = meta.icc
    if meta.dpi and output_format in ("jpeg", "png", "tiff"):
        options["dpi"] = meta.dpi
    if output_format == "tiff":  # IFD0's tags and the XMP packet (tag 700) go in one directory: ``tiffinfo``
        tags = {**(dict(_ifd0(meta.exif)) if meta.exif else {}), **({XMP_TIFF_TAG: meta.xmp} if meta.xmp else {})}
        if tags:  # (Pillow writes ``exif`` only without ``tiffinfo``)
            options["tiffinfo"] = tags
        return options
    if meta.exif:
        options["exif"] = meta.exif
    if meta.xmp:
        if output_format == "png":
            info = PngImagePlugin.PngInfo()
            info.add_itxt(XMP_PNG_KEY, meta.xmp.decode("utf-8", "replace"))
            options["pnginfo"] = info
        else:
            options["xmp"] = meta.xmp
    return options
