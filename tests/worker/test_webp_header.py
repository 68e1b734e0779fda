"""A WebP's compression read from its own headers: lossless or lossy, and a lossy frame's mean luma quantizer.

Three checks: headers written here field by field with VP8's boolean *encoder* (RFC 6386, section 7.3; values the
test chooses, so the parser's reading can be compared with what was written), libwebp's own ``webpinfo`` reading
the same files (an independent parser: the segments' quantizers and map probabilities it prints), and files libwebp
writes through Pillow at known qualities.
"""

import re
import shutil
import struct
import subprocess

import numpy as np
import pytest
from PIL import Image

from worker.webp_header import WebpCompression, read_webp_compression, vp8_luma_quantizer


class _BoolEncoder:
    """RFC 6386's boolean encoder, the counterpart of the decoder under test."""

    def __init__(self):
        self.out = bytearray()
        self.range, self.bottom, self.bit_count = 255, 0, 24

    def _carry(self):
        i = len(self.out) - 1
        while self.out[i] == 255:
            self.out[i] = 0
            i -= 1
        self.out[i] += 1

    def bool(self, value: int, probability: int = 128):
        split = 1 + (((self.range - 1) * probability) >> 8)
        if value:
            self.bottom += split
            self.range -= split
        else:
            self.range = split
        while self.range < 128:
            self.range <<= 1
            if self.bottom & (1 << 31):
                self._carry()
            self.bottom = (self.bottom << 1) & 0xFFFFFFFF
            self.bit_count -= 1
            if not self.bit_count:
                self.out.append(self.bottom >> 24)
                self.bottom &= (1 << 24) - 1
                self.bit_count = 8

    def literal(self, value: int, bits: int):
        for shift in reversed(range(bits)):
            self.bool((value >> shift) & 1)

    def optional_signed(self, value: int | None, bits: int):
        self.bool(value is not None)
        if value is not None:
            self.literal(abs(value), bits)
            self.bool(value < 0)

    def flush(self) -> bytes:
        count, value = self.bit_count, self.bottom
        if value & (1 << (32 - count)):
            self._carry()
        value = (value << (count & 7)) & 0xFFFFFFFF
        for _ in range(count >> 3):
            value = (value << 8) & 0xFFFFFFFF
        for _ in range(4):
            self.out.append(value >> 24)
            value = (value << 8) & 0xFFFFFFFF
        return bytes(self.out)


def _key_frame(base: int, segments: list[int | None] | None = None, absolute: bool = True,
               probabilities: list[int | None] | None = None, filter_deltas: bool = False,
               segment_data: bool = True) -> bytes:
    """A VP8 key frame's header (RFC 6386, sections 9.2-9.6) with the given quantizers, then some payload."""
    header = _BoolEncoder()
    header.literal(0, 2)  # colour space, clamping
    header.bool(segments is not None)
    if segments is not None:
        header.bool(probabilities is not None)  # update the segment map
        header.bool(segment_data)  # update the segment data
        if segment_data:
            header.bool(absolute)
            for value in segments:
                header.optional_signed(value, 7)
            for level in (3, None, -2, 5):
                header.optional_signed(level, 6)
        for probability in probabilities or []:
            header.bool(probability is not None)
            if probability is not None:
                header.literal(probability, 8)
    header.literal(0, 1)  # filter type
    header.literal(37, 6)  # loop filter level
    header.literal(5, 3)  # sharpness
    header.bool(filter_deltas)
    if filter_deltas:
        header.bool(1)
        for delta in (2, None, -4, 1, None, 3, -1, 6):
            header.optional_signed(delta, 6)
    header.literal(2, 2)  # partitions
    header.literal(base, 7)
    for _ in range(5):
        header.bool(0)  # no DC/chroma deltas
    first_partition = header.flush() + bytes(range(40))
    tag = (len(first_partition) << 5) | (1 << 4)  # key frame (bit 0 clear), version 0, shown
    return struct.pack("<I", tag)[:3] + b"\x9d\x01\x2a" + struct.pack("<HH", 64, 48) + first_partition


def test_a_frame_without_segments_reads_its_base_quantizer():
    for base in (0, 1, 37, 90, 127):
        assert vp8_luma_quantizer(_key_frame(base)) == base


def test_segment_quantizers_are_averaged_by_the_segment_maps_probabilities():
    p = [87, 82, 125]
    shares = [p[0] / 256 * p[1] / 256, p[0] / 256 * (1 - p[1] / 256), (1 - p[0] / 256) * p[2] / 256,
              (1 - p[0] / 256) * (1 - p[2] / 256)]
    frame = _key_frame(36, [36, 32, 25, 17], absolute=True, probabilities=p, filter_deltas=True)
    assert vp8_luma_quantizer(frame) == pytest.approx(np.dot(shares, [36, 32, 25, 17]))
    # delta mode: each segment's index is the base plus its delta, clipped to 0..127 (an absent delta is 0); a
    # probability not sent is 255
    delta = _key_frame(40, [-10, None, 100, -60], absolute=False, probabilities=[128, None, 64])
    p0, p1, p2 = 128 / 256, 255 / 256, 64 / 256
    shares = [p0 * p1, p0 * (1 - p1), (1 - p0) * p2, (1 - p0) * (1 - p2)]
    assert vp8_luma_quantizer(delta) == pytest.approx(np.dot(shares, [30, 40, 127, 0]))


def test_segments_without_their_data_quantize_at_zero_as_libwebp_decodes_them():
    assert vp8_luma_quantizer(_key_frame(40, [0, 0, 0, 0], segment_data=False)) == 0.0
    assert vp8_luma_quantizer(_key_frame(40, [10, 20, 30, 40], probabilities=None)) == 10  # no map: segment 0


def test_anything_but_a_key_frame_header_reads_as_unknown():
    frame = _key_frame(50)
    assert vp8_luma_quantizer(bytes([frame[0] | 1]) + frame[1:]) is None  # an interframe
    assert vp8_luma_quantizer(frame[:3] + b"\0\0\0" + frame[6:]) is None  # no start code
    assert vp8_luma_quantizer(frame[:9]) is None  # cut inside the size fields
    assert vp8_luma_quantizer(frame[:12]) is None  # cut inside the frame header's partition
    assert vp8_luma_quantizer(bytes([frame[0] & 0x1F, 0, 0]) + frame[3:]) is None  # a first partition of 0 bytes


def _photo(size=(96, 64)):
    yy, xx = np.mgrid[0:size[1], 0:size[0]]
    rng = np.random.default_rng(0)
    return np.clip(np.stack([xx * 2.5, yy * 3.5, (xx + yy) * 1.5], -1) + rng.normal(0, 12, (size[1], size[0], 3)),
                   0, 255).astype(np.uint8)


def test_libwebp_files_read_coarser_the_lower_their_quality(tmp_path):
    readings = []
    for quality in (10, 30, 50, 75, 90, 100):
        path = tmp_path / f"q{quality}.webp"
        Image.fromarray(_photo()).save(path, "WEBP", quality=quality)
        compression = read_webp_compression(path)
        assert compression is not None and not compression.lossless
        readings.append(compression.luma_quantizer)
    assert all(0 <= q <= 127 for q in readings)
    assert readings == sorted(readings, reverse=True) and len(set(readings)) == len(readings)
    assert readings[-1] < 1 and readings[0] > 60  # quality 100 quantizes finest, 10 coarsely


def test_lossless_alpha_animated_and_other_files(tmp_path):
    image = Image.fromarray(_photo())
    image.save(tmp_path / "lossless.webp", "WEBP", lossless=True)
    assert read_webp_compression(tmp_path / "lossless.webp") == WebpCompression(lossless=True)
    image.convert("RGBA").save(tmp_path / "alpha.webp", "WEBP", quality=60)  # VP8X, ALPH, then VP8
    image.save(tmp_path / "opaque.webp", "WEBP", quality=60)
    alpha, opaque = (read_webp_compression(tmp_path / f"{n}.webp") for n in ("alpha", "opaque"))
    assert not alpha.lossless and alpha.luma_quantizer == pytest.approx(opaque.luma_quantizer)
    animated = []  # an animation's frames sit in ANMF chunks: the first frame's is read
    for quality in (20, 90):
        image.save(tmp_path / "animated.webp", "WEBP", quality=quality, save_all=True, duration=100,
                   append_images=[image.rotate(90)])
        animated.append(read_webp_compression(tmp_path / "animated.webp"))
    assert not any(a.lossless for a in animated) and animated[0].luma_quantizer > animated[1].luma_quantizer + 20
    image.save(tmp_path / "photo.png")
    assert read_webp_compression(tmp_path / "photo.png") is None


@pytest.mark.parametrize("quality", [15, 60, 88])
def test_the_reading_matches_libwebps_own_webpinfo(tmp_path, quality):
    """``webpinfo -bitstream_info`` (Debian's webp package; scripts/test installs it) prints each segment's
    quantizer and the segment map's probabilities as libwebp's parser reads them."""
    webpinfo = shutil.which("webpinfo")
    if webpinfo is None:
        pytest.fail("webpinfo is not installed (Debian: apt-get install webp); scripts/test installs it")
    path = tmp_path / "photo.webp"
    Image.fromarray(_photo((160, 120))).save(path, "WEBP", quality=quality)
    printed = subprocess.run([webpinfo, "-bitstream_info", str(path)], capture_output=True, text=True,
                             check=True).stdout
    quantizers = [int(v) for v in re.search(r"Quantizer:\s+([\d ]+)", printed)[1].split()]
    p0, p1, p2 = (int(v) / 256 for v in re.search(r"Prob segment:\s+([\d ]+)", printed)[1].split())
    shares = [p0 * p1, p0 * (1 - p1), (1 - p0) * p2, (1 - p0) * (1 - p2)]
    assert read_webp_compression(path).luma_quantizer == pytest.approx(np.dot(shares, quantizers))
