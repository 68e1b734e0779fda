"""Writing an output far larger than memory: rows gathered in one uncompressed file, encoded by libvips.

Bands (``worker.bands``) arrive top to bottom, as arrays (one worker) or as raw band files (a split job's
bands, made by many workers). Their rows are appended to a single uncompressed BigTIFF on local disk
(``RowFile``), which libvips then reads sequentially, a few strips at a time, while it encodes the output:
a 20 MP x4 PNG no longer needs 1 GiB for its pixels. One file matters: libvips joining many band files keeps
a read buffer per file (about 0.5 GiB for 17 bands of a 20 MP x4), and its own ``.v`` files are memory-mapped,
which counts every page read in the process's resident memory. libvips also writes what Pillow cannot:
tiled BigTIFF past 4 GiB.

The encoding choices (default qualities, chroma subsampling) are the ones of ``worker.imaging.encode``, read
from the same constants, and the metadata each format keeps is decided in one place (``metadata.for_format``),
so a streamed output looks like a small one; PNG's zlib level is libvips' own (its level 1 compresses far less
than Pillow's).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import numpy as np

from worker.imaging import AVIF_QUALITY, AVIF_SPEED, JPEG_FULL_CHROMA_FROM, JPEG_QUALITY, WEBP_QUALITY, vips_image
from worker.metadata import XMP_PNG_KEY, Metadata, for_format, turns_grey_to_srgb
from worker.webp_header import chunk_headers

# A band's rows as raw interleaved samples (uint8, or little-endian uint16): the job's rows give its shape.
BAND_SUFFIX = ".raw"
DEEP_FORMATS = ("png", "tiff")  # the outputs that keep 16 bits per sample
BIGTIFF_FROM_BYTES = 3 * 2**30  # a classic TIFF's offsets end at 4 GiB; leave room for tiles and tags
TIFF_TILE = 256
# libvips' zlib level 1 with the "sub" row filter wrote PNGs 1.4-2.7x the in-memory writer's (Pillow's level 1,
# adaptive filters) for the same pixels. Level 2 with the "up" filter (an upscaled image is smooth from row to
# row): on three 3000-px-wide upscaled photos 6.9 / 11.8 / 5.0 MB in 0.13 / 0.25 / 0.10 s, against "sub" at level
# 1's 11.4 / 21.8 / 8.7 MB in 0.10 / 0.16 / 0.07 s; every filter tried ("all") was no smaller and twice as slow,
# Pillow took 0.32 s for 7.2 MB on the first.
STREAMED_PNG_COMPRESSION, STREAMED_PNG_FILTER = 2, "up"

# BigTIFF tags of a plain strip image: (tag, type) with SHORT 3, LONG8 16
_WIDTH, _HEIGHT, _BITS, _COMPRESSION, _PHOTOMETRIC = 256, 257, 258, 259, 262
_STRIP_OFFSETS, _SAMPLES, _ROWS_PER_STRIP, _STRIP_BYTES, _PLANAR = 273, 277, 278, 279, 284
_SHORT, _LONG8 = 3, 16


def _vips():
    import pyvips  # imported where used: the API and light workers never load libvips

    return pyvips


def write_band(pixels: np.ndarray, path: Path) -> None:
    """A band's pixels (H x W x 3, or H x W for greyscale; uint8 or uint16) as raw bytes, for a ``RowFile``."""
    np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("<")).tofile(path)


class WrongBandSize(ValueError):
    """A stored band's object does not hold its rows (a dead attempt's partial upload): nothing was appended."""


class RowFile:
    """An uncompressed BigTIFF written top to bottom: rows are appended as they come, the directory last.

    Strips are ``rows_per_strip`` rows each (every band's height is a multiple of it), so a reader holds
    one small strip at a time.
    """

    def __init__(self, path: Path, width: int, height: int, channels: int, rows_per_strip: int, bits: int = 8):
        self.path, self.width, self.height, self.channels = Path(path), width, height, channels
        self.rows_per_strip, self.bits = rows_per_strip, bits
        self.dtype = np.dtype("<u2" if bits == 16 else "u1")
        self.row_bytes = width * channels * self.dtype.itemsize
        self.rows = 0
        self._file: BinaryIO = self.path.open("wb")
        self._file.write(b"II" + struct.pack("<HHHQ", 43, 8, 0, 0))  # BigTIFF header; IFD offset patched on close

    def append(self, pixels: np.ndarray) -> None:
        if (pixels.shape[1] != self.width or (pixels.ndim == 3) != (self.channels == 3)
                or pixels.dtype.itemsize != self.dtype.itemsize):
            raise ValueError(f"band of shape {pixels.shape} ({pixels.dtype}) does not fit rows of {self.width} x "
                             f"{self.channels} x {self.bits} bits")
        # written from the array's own memory (tobytes() copied a band of tens of MB once more)
        self._file.write(memoryview(np.ascontiguousarray(pixels, dtype=self.dtype)).cast("B"))
        self.rows += pixels.shape[0]

    def append_from(self, fill: Callable[[BinaryIO], None], rows: int) -> None:
        """Let ``fill`` stream a ``write_band`` file of ``rows`` rows into this file (e.g. straight from storage,
        never the whole band in memory); its size is checked."""
        start = self._file.tell()
        try:
            fill(self._file)
        except BaseException:  # nothing of a failed fill stays: the band can be appended again from here
            self._file.seek(start)
            self._file.truncate()
            raise
        written = self._file.tell() - start
        if written != rows * self.row_bytes:
            self._file.seek(start)
            self._file.truncate()
            raise WrongBandSize(f"a band of {rows} rows should hold {rows * self.row_bytes} bytes, not {written}")
        self.rows += rows

    def close(self) -> None:
        if self.rows != self.height:
            self._file.close()
            raise ValueError(f"{self.rows} rows written of {self.height}")
        strips = -(-self.height // self.rows_per_strip)
        strip_bytes = [min(self.rows_per_strip, self.height - i * self.rows_per_strip) * self.row_bytes
                       for i in range(strips)]
        offsets = np.cumsum([16, *strip_bytes[:-1]], dtype=np.uint64)
        arrays_at = self._file.tell()
        self._file.write(offsets.astype("<u8").tobytes())
        self._file.write(np.asarray(strip_bytes, dtype="<u8").tobytes())
        bits = struct.pack("<" + "H" * self.channels, *[self.bits] * self.channels).ljust(8, b"\0")
        entries = [
            (_WIDTH, _LONG8, 1, struct.pack("<Q", self.width)),
            (_HEIGHT, _LONG8, 1, struct.pack("<Q", self.height)),
            (_BITS, _SHORT, self.channels, bits),
            (_COMPRESSION, _SHORT, 1, struct.pack("<H", 1).ljust(8, b"\0")),
            (_PHOTOMETRIC, _SHORT, 1, struct.pack("<H", 2 if self.channels == 3 else 1).ljust(8, b"\0")),
            (_STRIP_OFFSETS, _LONG8, strips,
             struct.pack("<Q", int(offsets[0]) if strips == 1 else arrays_at)),
            (_SAMPLES, _SHORT, 1, struct.pack("<H", self.channels).ljust(8, b"\0")),
            (_ROWS_PER_STRIP, _LONG8, 1, struct.pack("<Q", self.rows_per_strip)),
            (_STRIP_BYTES, _LONG8, strips,
             struct.pack("<Q", strip_bytes[0]) if strips == 1 else struct.pack("<Q", arrays_at + 8 * strips)),
            (_PLANAR, _SHORT, 1, struct.pack("<H", 1).ljust(8, b"\0")),
        ]
        ifd_at = self._file.tell()
        self._file.write(struct.pack("<Q", len(entries)))
        for tag, kind, count, value in entries:
            self._file.write(struct.pack("<HHQ", tag, kind, count) + value)
        self._file.write(struct.pack("<Q", 0))
        self._file.seek(8)
        self._file.write(struct.pack("<Q", ifd_at))
        self._file.close()


def encode_rows(rows: Path, destination: Path, output_format: str, quality: int | None,
                meta: Metadata) -> tuple[int, int]:
    """Encode a closed ``RowFile`` to ``destination``, streaming; returns (width, height)."""
    vips = _vips()
    image = vips_image(rows, access="sequential")
    deep = image.format == "ushort"
    if deep and output_format not in DEEP_FORMATS:
        raise ValueError(f"{output_format} takes 8 bits per sample; render such outputs from 8-bit pixels")
    if deep:
        image = image.copy(interpretation="grey16" if image.bands == 1 else "rgb16")
    else:
        image = image.copy(interpretation="b-w" if image.bands == 1 else "srgb")
    if turns_grey_to_srgb(meta, output_format, image.bands == 1):
        image = image.copy()
        image.set_type(vips.GValue.blob_type, "icc-profile-data", meta.icc)
        image = image.icc_transform("srgb", embedded=True, intent="relative")
        image.remove("icc-profile-data")
        meta = replace(meta, icc=None)
    meta = for_format(meta, output_format)
    image = _with_metadata(image, meta)
    if output_format == "jpeg":
        q = quality or JPEG_QUALITY
        # no optimized Huffman tables: libjpeg then keeps every coefficient of the whole picture (11 bytes per
        # output pixel: 3.5 GB for a 320 MP result) where the point of streaming is memory that does not grow
        _save(image, destination, ".jpg", Q=q, subsample_mode="off" if q >= JPEG_FULL_CHROMA_FROM else "on",
              optimize_coding=False)
    elif output_format == "webp":
        _save(image, destination, ".webp", Q=quality or WEBP_QUALITY, effort=4)
        if meta.exif:
            drop_webp_exif_identifier(destination)
    elif output_format == "avif":  # libvips' effort counts the other way from libavif's speed (9 - speed)
        _save(image, destination, ".avif", compression="av1", Q=quality or AVIF_QUALITY, effort=9 - AVIF_SPEED)
    elif output_format == "tiff":
        big = image.width * image.height * image.bands * (2 if deep else 1) >= BIGTIFF_FROM_BYTES
        _save(image, destination, ".tif", compression="deflate", predictor="horizontal", tile=True,
              tile_width=TIFF_TILE, tile_height=TIFF_TILE, bigtiff=big)
        if meta.exif:
            add_text_tags(destination, text_tags(meta.exif))
    else:
        # libvips writes XMP into a compressed zTXt chunk; the XMP specification (and Adobe's readers) want an
        # uncompressed iTXt before the pixels, which the in-memory writer makes: inserted as the bytes stream out
        image.remove("xmp-data")
        if not meta.xmp:
            _save(image, destination, ".png", compression=STREAMED_PNG_COMPRESSION, filter=STREAMED_PNG_FILTER)
        else:
            with destination.open("wb") as fh:
                stream = _ChunkBeforePixels(fh, png_itxt(XMP_PNG_KEY, meta.xmp))
                target = vips.TargetCustom()
                target.on_write(stream.write)
                image.write_to_target(target, ".png", compression=STREAMED_PNG_COMPRESSION,
                                      filter=STREAMED_PNG_FILTER)
                stream.close()
    return image.width, image.height


def _save(image, destination: Path, suffix: str, **options) -> None:
    """Stream ``image`` to ``destination`` with the saver of ``suffix``, through a file descriptor, as
    ``vips_image`` reads (libvips takes names as UTF-8 only: a streamed result for ``café.png`` named in
    Latin-1 failed with a UnicodeEncodeError). Open for reading too: the TIFF saver reads back what it wrote."""
    with Path(destination).open("w+b") as fh:
        image.write_to_target(_vips().Target.new_to_descriptor(fh.fileno()), suffix, **options)


def png_itxt(keyword: str, text: bytes) -> bytes:
    """An uncompressed PNG iTXt chunk: no language tag, no translated keyword."""
    data = keyword.encode("latin-1") + b"\0\0\0\0\0" + text
    return struct.pack(">I", len(data)) + b"iTXt" + data + struct.pack(">I", zlib.crc32(b"iTXt" + data))


class _ChunkBeforePixels:
    """What libvips writes of a PNG, passed on to ``out`` with ``chunk`` inserted before the first IDAT (only the
    few header chunks before it are held; the pixels then stream through untouched)."""

    def __init__(self, out: BinaryIO, chunk: bytes):
        self.out, self.chunk, self.held = out, chunk, bytearray()

    def write(self, data: bytes) -> int:
        if self.chunk is None:
            self.out.write(data)
            return len(data)
        self.held += data
        at = 8  # after the signature
        while at + 8 <= len(self.held):
            if self.held[at + 4:at + 8] == b"IDAT":
                self.out.write(bytes(self.held[:at]) + self.chunk + bytes(self.held[at:]))
                self.chunk, self.held = None, bytearray()
                break
            at += 12 + int.from_bytes(self.held[at:at + 4], "big")
        return len(data)

    def close(self) -> None:
        if self.chunk is not None:  # no IDAT came: not a PNG libvips would write
            raise ValueError("the PNG stream ended before its pixels")


# EXIF IFD0 text fields a studio relies on, written into a streamed TIFF's own first directory (libvips writes no
# EXIF into TIFF; the in-memory path keeps the same IFD0 through Pillow).
TEXT_TAGS = {270: "ImageDescription", 271: "Make", 272: "Model", 305: "Software", 306: "DateTime", 315: "Artist",
             33432: "Copyright"}
_ASCII = 2


def text_tags(exif: bytes) -> dict[int, bytes]:
    """The ``TEXT_TAGS`` an EXIF block carries, as NUL-terminated ASCII."""
    from PIL import Image

    parsed = Image.Exif()
    parsed.load(exif)
    return {tag: str(parsed[tag]).encode("ascii", "replace") + b"\0" for tag in TEXT_TAGS
            if isinstance(parsed.get(tag), str) and parsed[tag]}


def add_text_tags(path: Path, tags: dict[int, bytes]) -> None:
    """Add ASCII tags to the first directory of a little-endian TIFF or BigTIFF, in place: the values and a new
    copy of the directory go at the end of the file and the header points to it (nothing else moves)."""
    if not tags:
        return
    with Path(path).open("r+b") as fh:
        header = fh.read(16)
        if header[:2] != b"II":
            return
        big = struct.unpack_from("<H", header, 2)[0] == 43
        count_fmt, entry_size, value_size = ("<Q", 20, 8) if big else ("<H", 12, 4)
        ifd_at = struct.unpack_from("<Q" if big else "<I", header, 8 if big else 4)[0]
        fh.seek(ifd_at)
        count = struct.unpack(count_fmt, fh.read(struct.calcsize(count_fmt)))[0]
        entries = {struct.unpack_from("<H", raw)[0]: raw
                   for raw in (fh.read(entry_size) for _ in range(count))}
        next_ifd = fh.read(value_size)
        fh.seek(0, 2)
        for tag, value in tags.items():
            if tag in entries:
                continue  # libvips wrote it (e.g. Software): keep the file's own
            inline = value.ljust(value_size, b"\0") if len(value) <= value_size else None
            if inline is None:
                offset = fh.tell()
                fh.write(value + b"\0" * (len(value) % 2))
                inline = struct.pack("<Q" if big else "<I", offset)
            entries[tag] = struct.pack("<HHQ" if big else "<HHI", tag, _ASCII, len(value)) + inline
        if fh.tell() % 2:
            fh.write(b"\0")
        new_at = fh.tell()
        fh.write(struct.pack(count_fmt, len(entries)) + b"".join(entries[t] for t in sorted(entries)) + next_ifd)
        fh.seek(8 if big else 4)
        fh.write(struct.pack("<Q" if big else "<I", new_at))


# What opens a JPEG's APP1 segment before the EXIF's TIFF structure. libvips writes it into a WebP's EXIF chunk too,
# where the container wants the TIFF structure alone (as cwebp, webpmux and Pillow write it): ExifTool warns of
# it, and readers that take the chunk as TIFF find no byte order.
_JPEG_EXIF_IDENTIFIER = b"Exif\0\0"


def drop_webp_exif_identifier(path: Path) -> None:
    """Rewrite a WebP's EXIF chunk without the JPEG identifier, in place: the chunks from EXIF on (metadata,
    after the pixels) are written again and the file cut to its new length, so the pixels are not copied."""
    with open(path, "r+b") as fh:
        fh.seek(12)
        for fourcc, size in chunk_headers(fh):
            if fourcc == b"EXIF":
                break
            fh.seek(size + (size & 1), 1)
        else:
            return
        start = fh.tell() - 8
        payload = fh.read(size)
        if not payload.startswith(_JPEG_EXIF_IDENTIFIER):
            return
        fh.seek(size & 1, 1)
        after = fh.read()  # the XMP chunk, if any
        payload = payload[len(_JPEG_EXIF_IDENTIFIER):]
        fh.seek(start)
        fh.write(b"EXIF" + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) & 1) + after)
        fh.truncate()
        end = fh.tell()
        fh.seek(4)
        fh.write(struct.pack("<I", end - 8))


def _with_metadata(image, meta: Metadata):
    """EXIF, XMP, ICC and resolution as libvips metadata (written by each saver that can carry them)."""
    vips = _vips()
    image = image.copy()
    # metadata.for_format always gives a resolution (72 dpi where the input stated none)
    image = image.copy(xres=meta.dpi[0] / 25.4, yres=meta.dpi[1] / 25.4)  # libvips counts pixels per mm
    for field, blob in (("exif-data", meta.exif), ("xmp-data", meta.xmp), ("icc-profile-data", meta.icc)):
        if blob:
            image.set_type(vips.GValue.blob_type, field, blob)
    return image
