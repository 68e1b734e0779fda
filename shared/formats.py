"""Which input images are accepted, and how one is sniffed: by its content, never its name.

One place for the API (uploads) and the worker (images fetched from ``image_url``).
"""

from __future__ import annotations

import functools
import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import ExifTags, Image, PngImagePlugin

from shared.errors import NOT_THE_FILES

# MPO is how many cameras write JPEGs (a JPEG with extra frames, e.g. a depth map): stored as the JPEG it is,
# and the worker uses its first frame.
# HEIF is how iPhones (and many Android phones) save photos, read through pi-heif (libheif); AVIF is Pillow's own.
INPUT_FORMATS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "WEBP": "webp", "BMP": "bmp", "TIFF": "tiff",
                 "GIF": "gif", "HEIF": "heic", "AVIF": "avif"}
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "bmp": "image/bmp",
                 "tiff": "image/tiff", "gif": "image/gif", "heic": "image/heic", "avif": "image/avif"}
QUARTER_TURNS = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height
# File name endings a folder of inputs is filtered by (``is_image_name``); uploads are sniffed instead.
INPUT_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".mpo", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".heic", ".heif",
                            ".avif"})


def is_image_name(name: str) -> bool:
    """Whether a file found in a folder is taken as an input image (``upscaler upscale DIR``, ``submit DIR``,
    ``upscaler eval``'s benchmark sets; the web page's folder drop mirrors it): an image suffix, and not hidden.
    Dot-files are the system's, not photos: macOS writes ``._IMG_0001.jpg`` (AppleDouble metadata) beside every
    photo on a shared or FAT disk, and each one failed the run as an unreadable image."""
    return not name.startswith(".") and Path(name).suffix.lower() in INPUT_SUFFIXES


MAX_PNG_TEXT = 32 * 2**20  # a PNG text chunk's largest decompressed size (Pillow's own cap: 1 MB)


@functools.cache
def register_decoders() -> None:
    """Teach Pillow to open HEIF/HEIC files (pi-heif's opener; its transforms are applied on decode and the EXIF
    orientation reset, so ``exif_transpose`` stays right). Why pi-heif: it is libheif with the HEVC *decoder*
    (libde265, LGPL) only; pillow-heif also bundles the x265 encoder (GPL), which a deployment never needs (the
    tests write HEICs with it: the dev extra). Registering a plugin changes Pillow for the whole process, so it
    happens here, once, on the first ``open_image``, not as a side effect of an import.

    Pillow's own decompression-bomb cap (about 179 MP) is lifted the same way: every input's pixels are counted
    against ``UPSCALER_MAX_INPUT_PIXELS`` from its header before anything is decoded (``sniff``), and that limit
    must be the one that holds (the cap refused a 200 MP upload that the setting allowed).

    So is its cap on one PNG text chunk's decompressed size (1 MB), which refused a whole image for its metadata:
    ImageMagick stores EXIF and XMP as hex text chunks (twice their size), and a Photoshop document's history
    passes 1 MB. Text stays bounded: ``MAX_PNG_TEXT`` per chunk, and Pillow's ``MAX_TEXT_MEMORY`` over all."""
    from pi_heif import register_heif_opener

    register_heif_opener(thumbnails=False)
    Image.MAX_IMAGE_PIXELS = None
    PngImagePlugin.MAX_TEXT_CHUNK = max(PngImagePlugin.MAX_TEXT_CHUNK, MAX_PNG_TEXT)
    PngImagePlugin.MAX_TEXT_MEMORY = max(PngImagePlugin.MAX_TEXT_MEMORY, MAX_PNG_TEXT)


def open_image(source: str | Path | BinaryIO) -> Image.Image:
    """``Image.open`` for an input: every accepted format's decoder is registered first."""
    register_decoders()
    return Image.open(source)


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


def displayed_size(image: Image.Image, data: bytes) -> tuple[int, int]:
    """The size as shown, after the EXIF orientation the worker applies (``ImageOps.exif_transpose``): a phone
    photo stored landscape and tagged "rotate 90" is portrait, and every size asked of it is of the portrait.
    ``data``: the file ``image`` was opened from."""
    width, height = image.size
    if image.format == "TIFF":  # Pillow's TIFF reader turns the image itself: its size is already as shown
        return width, height
    if image.format == "PNG" and "exif" not in image.info:
        # Pillow's getexif() would decode the whole image to look for an eXIf chunk after the pixels, or read
        # ImageMagick's raw profile (the worker does either, and turns the picture by it): read here without
        # decompressing anything, the raw profile's hex or the chunk headers walked
        raw = image.info.get("Raw profile type exif")
        exif = Image.Exif()
        try:
            exif.load((raw_profile(raw) or b"") if raw else _late_png_exif(data) or b"")
        except (ValueError, SyntaxError, struct.error):  # a damaged profile turns nothing (as in the worker)
            exif = Image.Exif()
        orientation = exif.get(ExifTags.Base.Orientation, 1)
    else:
        try:
            orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
        except (ValueError, SyntaxError, struct.error):  # a damaged EXIF turns nothing, as in the worker (a PNG's
            orientation = 1  # eXIf before its pixels, a WebP's EXIF chunk: refused as "not a readable image")
    return (height, width) if orientation in QUARTER_TURNS else (width, height)


def raw_profile(text: str) -> bytes | None:
    """The bytes of an ImageMagick "Raw profile type NAME" PNG text chunk (a blank line, the name, the length,
    then the bytes in hex over many lines); None when it is damaged."""
    try:
        return bytes.fromhex("".join(text.split("\n")[3:]))
    except (ValueError, AttributeError):
        return None


def _late_png_exif(data: bytes) -> bytes | None:
    """The eXIf chunk of a PNG file, wherever it lies, read by walking the chunk headers; None when there is none
    (what there is of it when the file ends early)."""
    for kind, start, end in _png_chunks(data):
        if kind == b"eXIf":
            return data[start:end]
        if kind == b"IEND":
            return None
    return None


DNG_VERSION, NEW_SUBFILE_TYPE = 50706, 254
REDUCED_RESOLUTION = 1  # NewSubfileType's bit 0: "a reduced-resolution version of another image in this file"


def _camera_raw(image: Image.Image) -> bool:
    """A DNG (or a TIFF-based raw: NEF, CR2, ARW...) whose first directory is a reduced-resolution preview: its
    sensor data is further on, where Pillow does not read. Accepted, a studio's raw came back as 4x its 256 px
    thumbnail, without a word."""
    if image.format != "TIFF":
        return False
    tags = getattr(image, "tag_v2", {})
    return DNG_VERSION in tags or bool(int(tags.get(NEW_SUBFILE_TYPE, 0) or 0) & REDUCED_RESOLUTION)


# PNG chunks, or JPEG segments before the first scan, a file may hold. Pillow walks them in Python as it opens the
# file (and ``_late_png_exif`` walks the chunks again): a 45 MB PNG of 4 million empty chunks held an API thread
# for 38 s, a JPEG of 2.5 million comments 7 s. Real files hold tens of segments, and a PNG's IDAT split into
# 8 kB pieces (libpng's default) thousands; a count past this is refused after a walk of a few milliseconds.
MAX_SEGMENTS = 65536
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOS, JPEG_STANDALONE = 0xDA, frozenset({0x01, *range(0xD0, 0xD9)})  # markers with no length after them


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """A PNG's chunks as (type, where its data starts, where it ends: its CRC's 4 bytes follow), from the headers
    alone; the last may end past the data."""
    position = len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        yield kind, position + 8, position + 8 + length
        position += 12 + length


def jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """A JPEG stream's segments up to and including its first scan (SOS), as (marker, where its payload starts,
    where it ends), from the markers and lengths alone: a fill byte is a segment of marker 0xFF and a marker that
    carries no length one of no payload. The walk stops where the data stops being markers."""
    position = 2  # after SOI
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xFF:  # a fill byte
            yield marker, position + 1, position + 1
            position += 1
        elif marker in JPEG_STANDALONE:
            yield marker, position + 2, position + 2
            position += 2
        else:
            end = position + 2 + struct.unpack_from(">H", data, position + 2)[0]
            yield marker, position + 4, end
            if marker == JPEG_SOS:
                return
            position = end


def _segments(data: bytes) -> tuple[str, int] | None:
    """A PNG's chunks, or a JPEG's segments (fill bytes counted too) up to its first scan, counted up to one past
    ``MAX_SEGMENTS``: (the format, the count); None for other formats. Structure past what is counted is Pillow's
    to judge."""
    if data.startswith(PNG_SIGNATURE):
        fmt, walk, last = "PNG", _png_chunks(data), b"IEND"
    elif data.startswith(b"\xff\xd8"):
        fmt, walk, last = "JPEG", jpeg_segments(data), JPEG_SOS
    else:
        return None
    count = 0
    for count, (kind, _, _) in enumerate(walk, start=1):
        if kind == last or count > MAX_SEGMENTS:
            break
    return fmt, count


def _png_whole_but_its_end(data: bytes) -> bool:
    """Whether a PNG whose check failed ends exactly after a whole chunk, image data among them, with no IEND: cut
    off after its pixels (a copy interrupted at the very end, some encoders' last write lost). Pillow decodes it,
    as viewers show it; only its check wanted the IEND, and it was refused as not a readable image."""
    kinds, last = set(), len(PNG_SIGNATURE)
    for count, (kind, _, end) in enumerate(_png_chunks(data), start=1):
        if kind == b"IEND" or count > MAX_SEGMENTS:
            return False
        kinds.add(kind)
        last = end + 4  # its CRC
    return b"IDAT" in kinds and last == len(data)


def sniff(data: bytes, max_input_pixels: int) -> Sniffed:
    """Check an image's header (nothing is decoded here): a supported format within the pixel limit."""
    counted = _segments(data)
    if counted and counted[1] > MAX_SEGMENTS:
        raise ImageRejected("unsupported_image", f"this {counted[0]} file holds more than {MAX_SEGMENTS} "
                                                 f"{'chunks' if counted[0] == 'PNG' else 'segments before its image'}"
                                                 ", far past any real image's: save it again from an image editor")
    try:
        with open_image(io.BytesIO(data)) as image:
            kind = INPUT_FORMATS.get(image.format or "")
            width, height = displayed_size(image, data)
            alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
            if kind is None:
                raise ImageRejected("unsupported_image", f"{image.format} images are not accepted; send "
                                                         f"{', '.join(sorted(set(INPUT_FORMATS.values())))}")
            if _camera_raw(image):
                raise ImageRejected("unsupported_image", "camera raw files (DNG and other TIFF-based raws) are not "
                                                         "accepted: the image Pillow reads in them is the camera's "
                                                         "small preview; export a TIFF or JPEG from your raw "
                                                         "developer")
            if width * height > max_input_pixels:
                raise ImageRejected("image_too_large", f"the image has {width}x{height} = {width * height} pixels; "
                                                       f"the limit is {max_input_pixels}", limit=max_input_pixels)
            try:
                image.verify()
            except (OSError, SyntaxError):  # "truncated PNG file"
                if not (image.format == "PNG" and _png_whole_but_its_end(data)):
                    raise
    except (ImageRejected, *NOT_THE_FILES):
        raise
    except Image.DecompressionBombError as exc:
        raise ImageRejected("image_too_large", str(exc)) from exc
    except Exception as exc:  # a codec's failure is the file's: plugins raise what they like (AVIF: RuntimeError)
        layout = tiff_layout(data)
        if layout is not None:
            raise ImageRejected("unsupported_image", _tiff_refusal(*layout)) from exc
        if "text chunks" in str(exc):  # Pillow's own words for a PNG whose text passes MAX_TEXT_MEMORY in all
            raise ImageRejected("unsupported_image", "this PNG's text chunks (its metadata) pass "
                                                     f"{PngImagePlugin.MAX_TEXT_MEMORY >> 20} MB in all: save it "
                                                     "again without that metadata") from exc
        raise ImageRejected("unsupported_image", "the file is not a readable image (the content is checked, not "
                                                 "the name)") from exc
    return Sniffed(kind, width, height, alpha)


SAMPLE_KINDS = {1: "integer", 2: "signed integer", 3: "floating-point"}  # TIFF SampleFormat


def tiff_layout(data: bytes) -> tuple[int, int, str, int] | None:
    """A TIFF's first image's channels, bits per channel, kind of sample and photometric interpretation (its colour
    model: 2 RGB, 5 CMYK, 8..10 CIELab), read from its header (None: not a
    TIFF, or not said there). Pillow cannot open some layouts (more than four channels, floating-point colour,
    16-bit grey with alpha) and says only "cannot identify image file", which read as a broken file to a print
    shop sending a Photoshop file with a saved selection or an HDR render."""
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(data[:4])
    if order is None or len(data) < 8:
        return None
    offset = struct.unpack(order + "I", data[4:8])[0]
    if offset + 2 > len(data):
        return None
    (count,) = struct.unpack(order + "H", data[offset:offset + 2])
    found: dict[int, int] = {}
    for index in range(count):
        entry = data[offset + 2 + 12 * index:offset + 14 + 12 * index]
        if len(entry) < 12:
            break
        tag, kind, values = struct.unpack(order + "HHI", entry[:8])
        if tag in (258, 262, 277, 339) and kind == 3:  # BitsPerSample, Photometric, SamplesPerPixel, SampleFormat
            # the first value: in the entry when two fit there, else at the offset it holds
            start = offset + 10 + 12 * index if values <= 2 else struct.unpack(order + "I", entry[8:12])[0]
            if start + 2 <= len(data):
                found[tag] = struct.unpack(order + "H", data[start:start + 2])[0]
    if 277 not in found:
        return None
    return found[277], found.get(258, 1), SAMPLE_KINDS.get(found.get(339, 1), "unknown"), found.get(262, 2)


CIELAB = frozenset({8, 9, 10})  # TIFF PhotometricInterpretation: CIELab, ICCLab, ITULab


def _tiff_refusal(channels: int, bits: int, kind: str, photometric: int) -> str:
    """Why a TIFF of this layout is refused, and what to send instead."""
    if photometric in CIELAB:  # "save it with 16 bits" told a 16-bit Lab file to be what it was
        also = " or save it as CIELab with 8-bit samples" if photometric == 8 and bits != 8 else ""
        return (f"this TIFF is in CIELab colour with {bits}-bit samples, which is not supported: convert it to RGB "
                f"(8 or 16 bits per channel){also}")
    if channels > 4:
        return (f"this TIFF has {channels} channels (saved alpha channels or spot colours beside its colours), "
                "which are not supported: save it flattened, without extra channels")
    return (f"this TIFF's layout ({channels} channels of {bits}-bit {kind} samples) is not supported: save it with "
            "8 bits per channel, or 16 bits without alpha (integer samples)")
