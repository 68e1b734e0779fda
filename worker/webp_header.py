"""What a WebP file's own headers say about its compression: lossless or lossy, and how coarsely a lossy one was
quantized.

A WebP records no quality setting, but a lossy one is a VP8 key frame, whose header carries the quantizer
index its encoder chose (0 finest .. 127 coarsest; RFC 6386, section 9.6) and, where the encoder split the frame
into segments (libwebp does by default: up to four, quantized more coarsely where texture hides it), each
segment's index and the probabilities the segment map is coded with (section 9.3). The mean luma AC index
over the segments, weighted by those probabilities, is how damaged the file is: ``worker.input_profile`` maps
it to the robust network's strength (``worker.engine.strength.webp_strength``). Only the first partition's
first few bytes are read, through the format's boolean decoder; no pixels are decoded.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_KEY_FRAME_START = b"\x9d\x01\x2a"
_FRAME_TAG_BYTES = 10  # 3 bytes of frame tag, 3 of start code, 2 + 2 of size: then the first partition
_SEGMENTS = 4
_QUANTIZER_MAX = 127
_ANIMATION_FRAME_HEADER = 16  # an ANMF chunk's offset, size and timing fields before its own image chunks


@dataclass(frozen=True)
class WebpCompression:
    """A WebP's image chunk: lossless (``VP8L``) or lossy (``VP8 ``) with its mean luma quantizer index."""

    lossless: bool
    luma_quantizer: float | None = None  # 0..127, None where the VP8 header could not be read


def read_webp_compression(path: Path) -> WebpCompression | None:
    """The compression of a WebP's (first) image; None when the file is no WebP or holds no image chunk."""
    with open(path, "rb") as fh:
        data = fh.read()
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    return _first_image(data[12:])


def _first_image(chunks: bytes) -> WebpCompression | None:
    for fourcc, payload in _chunks(chunks):
        if fourcc == b"VP8L":
            return WebpCompression(lossless=True)
        if fourcc == b"VP8 ":
            return WebpCompression(lossless=False, luma_quantizer=vp8_luma_quantizer(payload))
        if fourcc == b"ANMF":  # an animation: its first frame is what gets decoded
            return _first_image(payload[_ANIMATION_FRAME_HEADER:])
    return None


def _chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The RIFF chunks of ``data``: (fourcc, payload); a chunk's odd size is padded by one byte."""
    position = 0
    while position + 8 <= len(data):
        fourcc, size = data[position:position + 4], struct.unpack("<I", data[position + 4:position + 8])[0]
        yield fourcc, data[position + 8:position + 8 + size]
        position += 8 + size + (size & 1)


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
    """The mean luma AC quantizer index (0..127) of a VP8 key frame, over its segments weighted by the segment
    map's probabilities; None for anything but a key frame's header (an interframe, a truncated chunk)."""
    if len(frame) < _FRAME_TAG_BYTES + 2 or frame[0] & 1 or frame[3:6] != _KEY_FRAME_START:
        return None
    header = _BoolDecoder(frame[_FRAME_TAG_BYTES:])
    header.literal(2)  # colour space, clamping type
    segment_values, absolute, probabilities = None, False, [255, 255, 255]
    if header.bool():  # segmentation enabled
        update_map, update_data = header.bool(), header.bool()
        if update_data:
            absolute = bool(header.bool())
            segment_values = [header.optional_signed(7) for _ in range(_SEGMENTS)]
            for _ in range(_SEGMENTS):
                header.optional_signed(6)  # loop filter level per segment
        if update_map:
            probabilities = [header.literal(8) if header.bool() else 255 for _ in range(3)]
    header.literal(1 + 6 + 3)  # filter type, loop filter level, sharpness
    if header.bool() and header.bool():  # loop filter deltas enabled and updated
        for _ in range(8):
            header.optional_signed(6)
    header.literal(2)  # number of DCT partitions
    base = header.literal(7)
    if segment_values is None:
        return float(base)
    quantizers = [min(max((value or 0) if absolute else base + (value or 0), 0), _QUANTIZER_MAX)
                  for value in segment_values]
    p0, p1, p2 = (p / 256 for p in probabilities)
    shares = (p0 * p1, p0 * (1 - p1), (1 - p0) * p2, (1 - p0) * (1 - p2))
    return sum(share * q for share, q in zip(shares, quantizers, strict=True))
