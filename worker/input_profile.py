"""What an input file tells about the damage it carries: its JPEG quality (or WebP/AVIF/HEIC quantizer), its
block grid and its noise.

``model=auto`` routes on this. A JPEG's quality is read from its quantization tables (the libjpeg
scaling of the Annex K tables, which Pillow, libjpeg-turbo, mozjpeg and most cameras start from); a lossy
WebP's, an AVIF's or a HEIC's quantizer index from its frame or slice header (``worker.webp_header``,
``worker.avif_header``, ``worker.heif_header``);
a lossless file's pixels (and a JPEG's) are searched for a JPEG they were decoded from (``worker.jpeg_history``: a
JPEG saved again as PNG, or at a finer quality, carries the first JPEG's damage), and their noise is measured
(``worker.noise``); the floors below say which readings make a file noisy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from PIL.JpegImagePlugin import zigzag_index

from shared.formats import jpeg_segments, open_image
from worker.avif_header import avif_base_q_idx
from worker.engine.strength import jpeg_strength, noise_strength, quantizer_strength
from worker.heif_header import heif_slice_qp
from worker.jpeg_history import find_jpeg_history
from worker.jpeg_tables import BLOCK as JPEG_BLOCK
from worker.jpeg_tables import CHROMA, LUMA, QUALITIES, scaled
from worker.metadata import ORIENTATION
from worker.noise import estimate_noise
from worker.webp_header import WebpCompression, read_webp_compression

JPEG_FORMATS = {"JPEG", "MPO"}
# The strength of a lossy file whose quantizer could not be read (a HEIC that is not an IDR picture, an odd box):
# HEIF's is the fixed strength that served best on average over qualities 10..90 on LR files of training images
# (x2 and x4: 0.07 dB under each quality's best on average, 0.21 at most: docs/model.md), AVIF's and WebP's their
# encoders' defaults' (libavif's quality 75 is index 76, libwebp's 80 a mean index of ~19). Measured noise still
# raises it; ``denoise`` overrides it.
ASSUMED_STRENGTH = {"HEIF": 0.07, "AVIF": quantizer_strength("AVIF", 76.0), "WEBP": quantizer_strength("WEBP", 19.0)}
UNREAD_WEBP = WebpCompression(lossless=False)  # a WebP whose image chunk was not found: taken for a lossy one
# Luma noise sigma (0..255) from which a lossless input counts as noisy whatever its colour noise (grey noise,
# which the colour differences cannot see). Clean downscaled photos measure 0.9 (median) and up to ~11 for
# the most textured (grass, foliage: texture reads as noise): at 8.0, 0.8 % of clean training LR images count
# as noisy and 99.7 % of those with grey noise of sigma 10 (100 % from sigma 15).
NOISE_FLOOR_SIGMA = 8.0
# Luma noise sigma from which a JPEG (or lossy WebP) counts as noisy too, its strength then the larger of its
# quality's and its noise's (the training labels take the larger of the two the same way, though with the noise's
# per-channel sigma: for colour noise the luma sigma is about 2/3 of it; on noisy q90 files scaling the noise's
# strength by 0.6..1.5 was best at 1, docs/model.md). Luma only: 4:2:0 chroma averages colour noise away
# (colour noise of sigma 10 measures 0.4 in the colour differences of a q90 file). A JPEG's ringing and
# blocking read as noise too (clean q90 files of the training images' LR: median 0.8, 3.6 % at 6 or more),
# while colour noise of sigma 10 (luma sigma 6.7) measures 6.8 at q90 (90 % at 6 or more), grey sigma 10 reads
# 10.5; at q75 and below the encoder has already removed most noise from the flat blocks the estimate reads.
LOSSY_NOISE_FLOOR_SIGMA = 6.0
# ``NoiseEstimate.stroke_ratio`` from which a lossy file's luma reading is the edges of strokes (a page of dense
# text), not noise, and does not count from the lossy floor (the two-scale reading still can). Pages of
# 12 px DejaVu text on 16 px lines (Sans black on white, Serif 30 on 238, Mono 60 on 250; LR of x2 and x4 saved at
# q 90 / 75 / 50) read 2.1..6.4; the training images' LR (x2 and x4, the 569 files of 100 blocks or more) saved at
# q90 with noise of sigma 10 read at most 1.64 with colour noise (median 0.95) and 1.32 with grey (median 0.75).
STROKE_RATIO = 1.8
# JPEG quality from which a file without measured noise goes to the fidelity network, as a lossless one does: its
# blocking and ringing are below what the robust network's strength-0 fidelity costs. On the first 16 training
# images of train/bsd200 (LR saved at each quality), fidelity minus robust gain over bicubic, x2 / x4: q95
# -0.08 / -0.03, q96 -0.02 / -0.00, q97 +0.03 / +0.02, q98 +0.08 / +0.04, q100 +0.11 / +0.06 dB (docs/model.md).
NEAR_LOSSLESS_QUALITY = 97
# The same by a quantizer index (``worker.engine.strength.QUANTIZER_RANGE``): on LR files of 18 training images, the
# fidelity network's gain over bicubic minus the robust one's at its best strength, x2 / x4: libwebp quality 90
# (mean index 8.5) -0.02 / -0.01, 92 (6.6) +0.00 / +0.00, 93 (5.6) +0.02 / +0.01, 95 (3.9) +0.05 / +0.03, 100 (0)
# +0.10 / +0.06 dB; AVIF (Pillow's libavif) quality 80 (base_q_idx 60) -0.02 / -0.02, 90 (32) +0.06 / +0.03, 95 (16)
# +0.10 / +0.05 dB, where the difference crosses zero about index 52; HEIF never (-1): at QP 2 (quality 90) the
# robust network at its low strength is the fidelity one's equal (+0.00 / -0.01 dB) (docs/model.md).
NEAR_LOSSLESS_QUANTIZER = {"WEBP": 6.0, "AVIF": 48.0, "HEIF": -1.0}
# Colour-difference noise sigma from which a lossless input counts as noisy: clean downscaled training photos
# measure 0.34 (median) and at most 2.1; colour noise of per-channel sigma 5 measures about 4.5 (docs/model.md
# has the measurement: the training images' LR at x2 and x4).
COLOUR_NOISE_FLOOR_SIGMA = 3.5
# Two-scale luma reading (``NoiseEstimate.white_luma``) from which a lossless input counts as noisy (grey noise
# under NOISE_FLOOR_SIGMA): texture reads about 0 there. The training images' LR (x2 and x4, every other file;
# the 282 large enough to read, below) read at most 1.9 clean; with grey noise of sigma 4 / 5 / 6 / 8,
# 79 / 93 / 94 / 95 % read 2.5 or more (the misses are textured: texture outweighs noise at half resolution).
WHITE_NOISE_FLOOR_SIGMA = 2.5
# The two-scale reading's median over sigma on those images (0.75 at sigma 4 .. 0.79 at 8): it reads the
# flattest blocks, chosen where the noise happened to read low.
WHITE_UNDERREAD = 0.78

_SUMS = {q: (int(scaled(LUMA, q).sum()), int(scaled(CHROMA, q).sum())) for q in QUALITIES}


def estimate_jpeg_quality(tables: dict[int, list[int]]) -> int:
    """The libjpeg quality (1..100) whose scaled tables are closest to a file's tables (compared by sum, so the
    order they are written in does not matter)."""
    luma = int(np.sum(tables[0]))
    chroma = int(np.sum(tables[1])) if 1 in tables else None

    def distance(q: int) -> float:
        ls, cs = _SUMS[q]
        return abs(ls - luma) + (abs(cs - chroma) if chroma is not None else 0)

    return min(QUALITIES, key=lambda q: (distance(q), -q))


def jpeg_grid(raw_size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """Where a JPEG's 8x8 block grid lies in its upright pixels: the position (row, col) inside its block of
    the upright image's top-left pixel.

    The encoder's blocks start at the stored image's top-left corner; turning it upright can move a partial
    block to the top or left and run a block's pixels backwards. A DCT block mirrored is a DCT block, so a
    backwards run is given as the forward position that puts the block edges in the same places. Found by
    turning a small image with the same sizes modulo 8 the way decoding does.
    """
    width, height = raw_size
    proxy_w, proxy_h = JPEG_BLOCK + width % JPEG_BLOCK, JPEG_BLOCK + height % JPEG_BLOCK
    rows, cols = np.mgrid[0:proxy_h, 0:proxy_w]
    proxy = Image.fromarray(((rows % JPEG_BLOCK) * JPEG_BLOCK + cols % JPEG_BLOCK).astype(np.uint8))
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    proxy.info["exif"] = exif.tobytes()
    upright = np.asarray(ImageOps.exif_transpose(proxy)).astype(int)  # what ``worker.imaging.decode`` does
    origin = divmod(int(upright[0, 0]), JPEG_BLOCK)

    def forward(step: int) -> int:
        """The grid position of the top-left pixel along the upright axis whose next pixel has value ``step``."""
        after = divmod(int(step), JPEG_BLOCK)
        axis = 0 if after[0] != origin[0] else 1
        moved = (after[axis] - origin[axis]) % JPEG_BLOCK
        return origin[axis] if moved == 1 else JPEG_BLOCK - 1 - origin[axis]

    return forward(upright[1, 0]), forward(upright[0, 1])


@dataclass(frozen=True)
class InputProfile:
    """The measured damage of one input."""

    format: str
    lossy: bool
    jpeg_quality: int | None
    noise_sigma: float  # luma
    jpeg_grid: tuple[int, int] | None = None  # ``jpeg_grid``'s position for a JPEG; None otherwise
    colour_noise_sigma: float = 0.0  # per channel, from the colour differences
    white_noise_sigma: float | None = None  # luma, white across two scales (``NoiseEstimate.white_luma``)
    quantizer: float | None = None  # the encoder's quantizer index where read (``QUANTIZER_RANGE``: WebP, AVIF, HEIF)
    # an earlier JPEG encode found in the pixels (``worker.jpeg_history``), coarser than the file itself: a
    # lossless file holding a decoded JPEG, or a JPEG saved again at a finer quality; ``jpeg_grid`` is then its grid
    earlier_jpeg_quality: int | None = None
    stroke_ratio: float | None = None  # a lossy file's, ``NoiseEstimate.stroke_ratio``

    @property
    def strength(self) -> float:
        """Restoration strength 0..1 for the conditioned network (the training labels' scale).

        A lossy file's is its quality's (read from its tables or its frame or slice header, the reliable signal;
        an earlier, coarser JPEG's where one is found in the pixels, as for a lossless file holding one),
        or its noise's where that
        is larger and above the lossy floor (a high-ISO camera photo saved at quality 90: the training labels
        take the larger of the two the same way). A lossless (or near-lossless) file's comes from its noise,
        once that is above its floor (``measured_noise``): colour noise by its per-channel sigma, otherwise
        (grey noise, whose luma sigma is its per-channel sigma) by the luma estimate.
        """
        noise = self.measured_noise
        noise_part = noise_strength(noise[1]) if noise else 0.0
        return round(max(self.quality_strength, noise_part), 3)

    @property
    def quality_strength(self) -> float:
        """The strength a lossy file's quality alone gives (0 for a lossless file): a JPEG's from its quality, a
        WebP's, AVIF's or HEIC's from its quantizer, else ``ASSUMED_STRENGTH``."""
        if not self.quantized:
            return 0.0
        if self.damage_quality is not None:
            return jpeg_strength(self.damage_quality)
        if self.quantizer is not None:
            return quantizer_strength(self.format, self.quantizer)
        return ASSUMED_STRENGTH.get(self.format, 0.0)

    @property
    def measured_noise(self) -> tuple[str, float] | None:
        """The noise that makes the input noisy, as (kind, per-channel sigma); None under the floors.

        Colour noise first (lossless and near-lossless files: a lossy file's 4:2:0 chroma averages it away), then
        luma from its floor (not a lossy file's where it reads strokes, ``strokes``), then the two-scale reading,
        which a photo's texture does not reach. The luma floor
        is ``NOISE_FLOOR_SIGMA`` for a lossless file and ``LOSSY_NOISE_FLOOR_SIGMA`` for a lossy one (whose
        encoder flattens the texture that reads as noise), near-lossless ones included where the file is too small for
        the two-scale reading.
        """
        if not self.compressed and self.colour_noise_sigma >= COLOUR_NOISE_FLOOR_SIGMA:
            return "colour noise", self.colour_noise_sigma  # luma would add the photo's texture to it
        lossy_floor = self.compressed or (self.quantized and self.white_noise_sigma is None)
        luma_is_noise = not (lossy_floor and self.strokes)  # a lossless file's luma is read between them instead
        if luma_is_noise and self.noise_sigma >= (LOSSY_NOISE_FLOOR_SIGMA if lossy_floor else NOISE_FLOOR_SIGMA):
            return "noise", self.noise_sigma
        if self.white_noise_sigma is not None and self.white_noise_sigma >= WHITE_NOISE_FLOOR_SIGMA:
            # the luma reading, unless texture inflates it past what the white part says the noise is
            return "noise", min(self.noise_sigma, self.white_noise_sigma / WHITE_UNDERREAD)
        return None

    @property
    def strokes(self) -> bool:
        """The luma reading's flattest blocks hold the edges of strokes (``STROKE_RATIO``): a JPEG of a page of
        text reads them as noise of sigma 6..13, which raised its strength to 0.3..0.7 where its quality's measured
        0.02..1.0 dB better (docs/model.md)."""
        return self.stroke_ratio is not None and self.stroke_ratio >= STROKE_RATIO

    @property
    def noisy(self) -> bool:
        return self.measured_noise is not None

    @property
    def near_lossless(self) -> bool:
        """A JPEG of quality ``NEAR_LOSSLESS_QUALITY`` or more, or a file quantized no coarser than
        ``NEAR_LOSSLESS_QUANTIZER``: as good as clean for the networks."""
        if not self.quantized:
            return False
        if self.damage_quality is not None:
            return self.damage_quality >= NEAR_LOSSLESS_QUALITY
        return self.quantizer is not None and self.quantizer <= NEAR_LOSSLESS_QUANTIZER[self.format]

    @property
    def quantized(self) -> bool:
        """The pixels went through a lossy encoder: the file's own, or a JPEG found in a lossless file's pixels."""
        return self.lossy or self.earlier_jpeg_quality is not None

    @property
    def damage_quality(self) -> int | None:
        """The JPEG quality that says how damaged the pixels are: an earlier encode's found in them (coarser), else
        the file's own."""
        return self.earlier_jpeg_quality if self.earlier_jpeg_quality is not None else self.jpeg_quality

    @property
    def compressed(self) -> bool:
        """Quantized below near-lossless: the encoder's damage is the robust network's to undo."""
        return self.quantized and not self.near_lossless

    @property
    def damaged(self) -> bool:
        """Compressed or noisy: the robust network's kind of input."""
        return self.compressed or self.noisy

    def to_dict(self) -> dict:
        return {**asdict(self), "noise_sigma": round(self.noise_sigma, 2),
                "colour_noise_sigma": round(self.colour_noise_sigma, 2),
                "white_noise_sigma": None if self.white_noise_sigma is None else round(self.white_noise_sigma, 2),
                "quantizer": None if self.quantizer is None else round(self.quantizer, 1),
                "stroke_ratio": None if self.stroke_ratio is None else round(self.stroke_ratio, 2)}


def _lossy_and_quantizer(fmt: str, path: Path) -> tuple[bool, float | None]:
    """Whether a file of format ``fmt`` is lossy, and its encoder's quantizer index where this reads one."""
    if fmt == "WEBP":
        webp = read_webp_compression(path) or UNREAD_WEBP
        return not webp.lossless, webp.luma_quantizer
    if fmt == "AVIF":
        return True, avif_base_q_idx(path)
    if fmt == "HEIF":
        return True, heif_slice_qp(path)
    return fmt in JPEG_FORMATS, None


TIFF_COMPRESSION, TIFF_JPEG_TABLES, TIFF_JPEG = 259, 347, 7  # tags, and the Compression value of a JPEG TIFF
JPEG_DQT = 0xDB  # the marker of a segment of quantization tables


def tiff_jpeg_tables(image: Image.Image) -> dict[int, list[int]] | None:
    """The quantization tables of a JPEG-compressed TIFF (its JPEGTables tag: an abbreviated JPEG stream of DQT and
    DHT segments), None for any other file. Why: such a TIFF was taken for lossless, and one stored as RGB (as
    Pillow writes it) shows no trace of JPEG in its pixels either, so ``auto`` sent a q30 file to the fidelity
    network, below plain bicubic."""
    tags = getattr(image, "tag_v2", None)
    if image.format != "TIFF" or tags is None or tags.get(TIFF_COMPRESSION) != TIFF_JPEG:
        return None
    stream = tags.get(TIFF_JPEG_TABLES)
    if not isinstance(stream, bytes):
        return None
    tables: dict[int, list[int]] = {}
    for marker, at, end in jpeg_segments(stream):
        if marker != JPEG_DQT:
            continue
        while at < end:  # one or more tables, each a precision/id byte then 64 values of 8 or 16 bits
            wide, table = stream[at] >> 4, stream[at] & 0x0F
            size = 2 if wide else 1
            values = stream[at + 1:at + 1 + 64 * size]
            stored = [int.from_bytes(values[i:i + size], "big") for i in range(0, len(values), size)]
            if len(stored) == 64:  # stored in zigzag order: in rows, as Pillow gives a JPEG's (find_jpeg_history
                tables[table] = [stored[i] for i in zigzag_index]  # reads them by row and column)
            at += 1 + 64 * size
    return tables or None


def profile_input(path: Path, rgb: np.ndarray, alpha: np.ndarray | None = None) -> InputProfile:
    """Profile an input file (its format and quantization tables) and its decoded RGB pixels (with its alpha
    channel, if any: only fully opaque pixels are read for noise)."""
    with open_image(path) as image:
        fmt = (image.format or "unknown").upper()
        tables = getattr(image, "quantization", None) or tiff_jpeg_tables(image)
        jpeg_coded = fmt in JPEG_FORMATS or (fmt == "TIFF" and bool(tables))  # a JPEG TIFF's blocks start at 0, 0
        grid = jpeg_grid(image.size, image.getexif().get(ORIENTATION, 1)) if jpeg_coded else None
    quality = estimate_jpeg_quality(tables) if jpeg_coded and tables else None
    lossy, quantizer = _lossy_and_quantizer(fmt, path)
    lossy = lossy or quality is not None
    # a lossless file's pixels may hold a JPEG; a JPEG's, an earlier and coarser one (a JPEG saved again finer)
    own_table = tables.get(0) if quality is not None else None
    earlier = find_jpeg_history(rgb, finer_than=own_table) if not lossy or own_table is not None else None
    noise = estimate_noise(rgb, opaque=None if alpha is None else alpha == 255, lossless=not lossy and earlier is None)
    return InputProfile(fmt, lossy, quality, noise.luma, earlier.grid if earlier else grid, noise.colour,
                        noise.white_luma, quantizer, earlier.quality if earlier else None, noise.stroke_ratio)
