"""The libjpeg quality scale: ITU-T T.81 Annex K's example tables and how libjpeg scales them by a quality.

Pillow, libjpeg-turbo, mozjpeg and most cameras start from these tables, so a quality on this scale says how
coarsely a JPEG was quantized, whether read from a file's own tables (``worker.input_profile``) or from the
steps its DCT coefficients sit on after it was decoded and saved again losslessly (``worker.jpeg_history``).
"""

from __future__ import annotations

import numpy as np

BLOCK = 8  # a JPEG's DCT blocks are BLOCK x BLOCK pixels, their grid starting at the stored image's top-left corner
# Natural (row-major) order: entry [8 * v + u] is the step of vertical frequency v, horizontal frequency u.
LUMA = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.int64)
CHROMA = np.array([17, 18, 24, 47] + [99] * 4 + [18, 21, 26, 66] + [99] * 4 + [24, 26, 56] + [99] * 5 + [47, 66]
                  + [99] * 38, dtype=np.int64)
QUALITIES = range(1, 101)


def scaled(table: np.ndarray, quality: int) -> np.ndarray:
    """``table`` as libjpeg writes it at ``quality`` (1..100): 5000/q % below 50, 200 - 2q % from 50, 1..255."""
    factor = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((table * factor + 50) // 100, 1, 255)
