"""What a WebP file's own headers say about its compression: lossless or lossy, and how coarsely a lossy one was
quantized.

A WebP records no quality setting, but a lossy one is a VP8 key frame, whose header carries the quantizer
index its encoder chose (0 finest .. 127 coarsest; RFC 6386, section 9.6) and, where the encoder split the frame
into segments (libwebp does by default: up to four, quantized more coarsely where texture hides it), each
segment's index and the probabilities the segment map is coded with (section 9.3). The mean luma AC index
over the segments, weighted by those probabilities, is how damaged the file is: ``worker.input_profile`` maps
it to the robust network's strength (``worker.engine.strength.quantizer_strength``). Only the first partition's
first few bytes are read, through the format's boolean decoder; no pixels are decoded.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_KEY_FRAME_START = b"\x9d\x01\x2a"
_FRAME_TAG_BYTES = 10  # 3 bytes of frame tag, 3 of start code, 2 + 2 of size: then the first partition
# The frame header's fields open the first partition and take well under this (the per-macroblock modes follow).
_HEADER_BYTES = 1024
_SEGMENTS = 4
QUANTIZER_MAX = 127
_ANIMATION_FRAME_HEADER = 16  # an ANMF chunk's offset, size and timing fields before its own image chunks


@dataclass(frozen=True)
class WebpCompression:
    """A WebP's image chunk: lossless (``VP8L``) or lossy (``VP8 ``) with its mean luma quantizer index."""

    lossless: bool
    luma_quantizer: float | None = None  # 0..127, None where the VP8 header could not be read


def read_webp_compression(path: Path) -> WebpCompression | None:
    """The compression of a WebP's (first) image; None when the file is no WebP or holds no image chunk.

    Only chunk headers and the first kilobyte of the VP8 frame are read (a file may be tens of megabytes)."""
    with open(path, "rb") as fh:
        head = fh.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WEBP":
            return None
        for fourcc, size in chunk_headers(fh):
            if fourcc == b"ANMF":  # an animation: its first frame is what gets decoded
                fh.seek(_ANIMATION_FRAME_HEADER, 1)
                frame_end = fh.tell() - _ANIMATION_FRAME_HEADER + size
                return _image_chunk(fh, chunk_headers(fh, frame_end))
            if fourcc in (b"VP8L", b"VP8 "):
                return _image_chunk(fh, iter([(fourcc, size)]))
            fh.seek(size + (size & 1), 1)
    return None


def _image_chunk(fh: BinaryIO, headers: Iterator[tuple[bytes, int]]) -> WebpCompression | None:
    """The first image chunk among ``headers`` (the file positioned at each one's payload as it comes)."""
    for fourcc, size in headers:
        if fourcc == b"VP8L":
            return WebpCompression(lossless=True)
        if fourcc == b"VP8 ":
            frame = fh.read(min(size, _FRAME_TAG_BYTES + _HEADER_BYTES))
            whole = size >= _FRAME_TAG_BYTES + (int.from_bytes(frame[:3], "little") >> 5)  # first partition there
            return WebpCompression(lossless=False, luma_quantizer=vp8_luma_quantizer(frame) if whole else None)
        fh.seek(size + (size & 1), 1)
    return None


def chunk_headers(fh: BinaryIO, end: int | None = None) -> Iterator[tuple[bytes, int]]:
    """RIFF chunk headers from the file's position (to ``end``): (fourcc, payload size), the file left at the
    payload; the caller reads or seeks past it (a chunk's odd size is padded by one byte)."""
    while end is None or fh.tell() + 8 <= end:
        header = fh.read(8)
        if len(header) < 8:
            return
        yield header[:4], struct.unpack("<I", header[4:])[0]


class _BoolDecoder:
    """VP8's boolean entropy decoder (RFC 6386, section 7.3); bytes past the end read as zeros."""

    def __init__(self, data: bytes):
        self._data = data
        self._position = 2
        self._value = int.from_bytes(data[:2].ljust(2, b"\0"), "big")
        self._range = 255
        self._bit_count = 0

    def bool(self, probability: int = 128) -> int:
        split = 1 + (((self._range - 1) * probability) >> 8)
        if self._value >= split << 8:
            bit = 1
            self._range -= split
            self._value -= split << 8
        else:
            bit = 0
            self._range = split
        while self._range < 128:
            self._value <<= 1
            self._range <<= 1
            self._bit_count += 1
            if self._bit_count == 8:
                self._bit_count = 0
                if self._position < len(self._data):
                    self._value |= self._data[self._position]
                self._position += 1
        return bit

    def literal(self, bits: int) -> int:
        value = 0
        for _ in range(bits):
            value = (value << 1) | self.bool()
        return value

    def signed(self, bits: int) -> int:
        magnitude = self.literal(bits)
        return -magnitude if self.bool() else magnitude

    def optional_signed(self, bits: int) -> int | None:
        """A flag, then (if set) a signed value: how the header codes its optional updates."""
        return self.signed(bits) if self.bool() else None


def vp8_luma_quantizer(frame: bytes) -> float | None:
    """The mean luma AC quantizer index (0..127) of a VP8 key frame (``frame``: the chunk's payload, or at least
    its first ``_HEADER_BYTES`` of partition), over its segments weighted by the segment map's probabilities; None
    for anything but a key frame header (an interframe, a frame cut inside its header)."""
    first_partition = int.from_bytes(frame[:3], "little") >> 5
    if first_partition < 2 or len(frame) < _FRAME_TAG_BYTES + min(first_partition, _HEADER_BYTES):
        return None  # no room for a header, or cut inside it
    if frame[0] & 1 or frame[3:6] != _KEY_FRAME_START:
        return None
    header = _BoolDecoder(frame[_FRAME_TAG_BYTES:_FRAME_TAG_BYTES + first_partition])
    header.literal(2)  # colour space, clamping type
    segment_values, absolute, probabilities = None, False, None
    if header.bool():  # segmentation enabled
        update_map, update_data = header.bool(), header.bool()
        if update_data:
            absolute = bool(header.bool())
            segment_values = [header.optional_signed(7) for _ in range(_SEGMENTS)]
            for _ in range(_SEGMENTS):
                header.optional_signed(6)  # loop filter level per segment
        else:  # libwebp's decoder then quantizes every segment at absolute index 0
            segment_values, absolute = [0] * _SEGMENTS, True
        if update_map:  # without a map every block is in segment 0
            probabilities = [header.literal(8) if header.bool() else 255 for _ in range(3)]
    header.literal(1 + 6 + 3)  # filter type, loop filter level, sharpness
    if header.bool() and header.bool():  # loop filter deltas enabled and updated
        for _ in range(8):
            header.optional_signed(6)
    header.literal(2)  # number of DCT partitions
    base = header.literal(7)
    if segment_values is None:
        return float(base)
    quantizers = [min(max((value or 0) if absolute else base + (value or 0), 0), QUANTIZER_MAX)
                  for value in segment_values]
    if probabilities is None:
        return float(quantizers[0])
    p0, p1, p2 = (p / 256 for p in probabilities)
    shares = (p0 * p1, p0 * (1 - p1), (1 - p0) * p2, (1 - p0) * (1 - p2))
    return sum(share * q for share, q in zip(shares, quantizers, strict=True))
