"""An MSB-first bit reader with the descriptors the AV1 and HEVC specifications write their headers in.

The image-format readers (``worker.avif_header``, ``worker.heif_header``) read a few header fields with it; a field
past the end raises ``HeaderTruncated``, which they turn into "unknown".
"""

from __future__ import annotations


class HeaderTruncated(Exception):
    """The header ended before the field wanted."""


class BitReader:
    """Fixed-width fields ``f(n)`` (HEVC's ``u(n)``), AV1's ``uvlc()`` and ``ns(n)``, HEVC's ``ue(v)``/``se(v)``."""

    def __init__(self, data: bytes):
        self._data = data
        self._position = 0

    def f(self, bits: int) -> int:
        value = 0
        for _ in range(bits):
            byte = self._position >> 3
            if byte >= len(self._data):
                raise HeaderTruncated
            value = (value << 1) | ((self._data[byte] >> (7 - (self._position & 7))) & 1)
            self._position += 1
        return value

    def _leading_zeros(self, limit: int) -> int:
        """Zeros before the next 1, or ``limit`` if that many come first (the rest is then not scanned)."""
        leading = 0
        while leading < limit and not self.f(1):
            leading += 1
        return leading

    def uvlc(self) -> int:
        leading = self._leading_zeros(32)
        if leading >= 32:
            raise HeaderTruncated  # a 2^32 - 1 no encoder writes: more likely a corrupt header than a value
        return self.f(leading) + (1 << leading) - 1

    def ns(self, n: int) -> int:
        width = n.bit_length()
        extra = (1 << width) - n
        value = self.f(width - 1)
        return value if value < extra else (value << 1) - extra + self.f(1)

    ue = uvlc  # HEVC's ue(v) is the same Exp-Golomb code as AV1's uvlc()

    def se(self) -> int:
        code = self.ue()
        return (code + 1) // 2 if code & 1 else -(code // 2)
