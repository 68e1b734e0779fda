"""The damage real inputs carry, applied to training patches (numpy + Pillow, seeded).

In the spirit of Real-ESRGAN's and BSRGAN's pipelines, but tuned for fidelity rather than for
generative restoration: what users send is mostly a bicubic-like downscale followed by a JPEG encoder,
sometimes a little blur or sensor noise, sometimes a second JPEG pass (a re-saved web image). The order
is the one a photo goes through: blur (optics) -> downscale (camera or web resize) -> noise (sensor) ->
JPEG (one or two encodes, through Pillow's real encoder).

Each degraded patch is labelled with a **strength** in 0..1 (``strength_of``): the conditioned network
learns how hard to restore from it, and at inference the strength comes from the input file (its JPEG
quality, its noise level) or from the user's ``denoise`` value. A share of patches stays clean with
strength 0, so the network at 0 keeps the clean protocol's fidelity.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
from PIL import Image

from worker.engine.strength import strength_of

RESAMPLERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "lanczos": Image.LANCZOS, "box": Image.BOX}


@dataclass(frozen=True)
class DegradationConfig:
    """Probabilities and ranges of every kind of damage (saved in the model record)."""

    # Weighted towards what users send most (a resized photo saved as one JPEG): a broader first mix (25 %
    # blur+noise each, 40 % non-bicubic resamplers) bought generality at the price of ~0.2 dB on plain JPEGs.
    clean_share: float = 0.2
    blur_share: float = 0.08
    blur_sigma_lr: tuple[float, float] = (0.1, 0.5)  # in LR pixels (scaled to HR pixels before blurring)
    anisotropic_share: float = 0.5
    resamplers: tuple[tuple[str, float], ...] = (("bicubic", 0.8), ("bilinear", 0.07), ("lanczos", 0.08),
                                                 ("box", 0.05))
    noise_share: float = 0.12
    noise_sigma: tuple[float, float] = (1.0, 20.0)
    colour_noise_share: float = 0.6
    poisson_share: float = 0.3  # of noisy patches: signal-dependent (shot) noise instead of Gaussian
    jpeg_share: float = 0.95
    jpeg_quality: tuple[int, int] = (30, 95)
    second_jpeg_share: float = 0.12
    second_jpeg_same_grid_share: float = 0.5  # re-saved as it was; otherwise cropped in between (a new grid)
    chroma_444_share: float = 0.1  # Pillow and most cameras subsample chroma 4:2:0; some encoders do not

    def to_dict(self) -> dict:
        data = asdict(self)
        data["resamplers"] = dict(self.resamplers)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> DegradationConfig:
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        values["resamplers"] = tuple(dict(data["resamplers"]).items())
        return cls(**values)


def gaussian_kernel(sigma_x: float, sigma_y: float, angle: float) -> np.ndarray:
    """A normalised 2-D Gaussian (anisotropic when the sigmas differ, rotated by ``angle`` radians)."""
    radius = max(1, int(np.ceil(3 * max(sigma_x, sigma_y))))
    ax = np.arange(-radius, radius + 1, dtype=np.float64)
    yy, xx = np.meshgrid(ax, ax, indexing="ij")
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * xx + s * yy, -s * xx + c * yy
    kernel = np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return kernel / kernel.sum()


def convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """'same' 2-D correlation of an HxWxC float image with an odd square kernel, reflected borders, by the FFT.

    Why the FFT: a blur kernel at x4 is up to 13x13 taps with the default ranges, and summing over every tap
    made blurred patches 60 % of a batch's sampling time. The kernel is flipped so the FFT's convolution is
    the correlation the direct sum computed, for any kernel; the reflected border is wide enough that the
    wrap-around never reaches the result.
    """
    r = kernel.shape[0] // 2
    padded = np.pad(image, ((r, r), (r, r), (0, 0)), mode="reflect")
    size = padded.shape[:2]
    spectrum = np.fft.rfft2(padded, axes=(0, 1)) * np.fft.rfft2(kernel[::-1, ::-1], s=size)[..., None]
    return np.fft.irfft2(spectrum, s=size, axes=(0, 1))[2 * r :, 2 * r :]


def jpeg_roundtrip(image: np.ndarray, quality: int, subsampling: int, phase: tuple[int, int]) -> np.ndarray:
    """Encode and decode with Pillow's JPEG encoder; ``phase`` shifts the 8x8 block grid as in a larger photo:
    the image's top-left pixel sits at ``phase`` (row, col) inside its block."""
    py, px = phase
    padded = np.pad(image, ((py, 0), (px, 0), (0, 0)), mode="edge")
    buffer = io.BytesIO()
    Image.fromarray(padded).save(buffer, "JPEG", quality=int(quality), subsampling=subsampling)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))[py:, px:]


class Degraded(NamedTuple):
    """A degraded LR patch, its strength label, and where its last JPEG encode put the 8x8 block grid: the
    position inside its block of the patch's top-left pixel, (row, col); None when no JPEG encode ran."""

    lr: np.ndarray
    strength: float
    grid: tuple[int, int] | None = None


class Degrader:
    """Turns an HR patch into an LR patch and its strength label, with its own random generator."""

    def __init__(self, config: DegradationConfig, rng: np.random.Generator):
        self.config = config
        self.rng = rng
        names, weights = zip(*config.resamplers, strict=True)
        self._resamplers = [RESAMPLERS[n] for n in names]
        self._resampler_p = np.asarray(weights, dtype=np.float64) / np.sum(weights)

    def _uniform(self, bounds: tuple[float, float]) -> float:
        return float(self.rng.uniform(*bounds))

    def _blur(self, hr: np.ndarray, scale: int) -> np.ndarray:
        sigma = self._uniform(self.config.blur_sigma_lr) * scale
        if self.rng.random() < self.config.anisotropic_share:
            kernel = gaussian_kernel(sigma, self._uniform(self.config.blur_sigma_lr) * scale,
                                     self._uniform((0.0, np.pi)))
        else:
            kernel = gaussian_kernel(sigma, sigma, 0.0)
        return np.clip(np.round(convolve(hr.astype(np.float64), kernel)), 0, 255).astype(np.uint8)

    def _noise(self, lr: np.ndarray) -> tuple[np.ndarray, float]:
        sigma = self._uniform(self.config.noise_sigma)
        image = lr.astype(np.float64)
        grey = self.rng.random() >= self.config.colour_noise_share
        shape = (*image.shape[:2], 1) if grey else image.shape
        if self.rng.random() < self.config.poisson_share:
            # Shot noise: variance proportional to the signal, scaled so mid-grey gets ``sigma``.
            noise = self.rng.standard_normal(shape) * sigma * np.sqrt(np.maximum(image.mean(-1, keepdims=True)
                                                                               if grey else image, 1.0) / 128.0)
        else:
            noise = self.rng.standard_normal(shape) * sigma
        return np.clip(np.round(image + noise), 0, 255).astype(np.uint8), sigma

    def _jpeg(self, lr: np.ndarray, quality: int, phase: tuple[int, int] | None = None
              ) -> tuple[np.ndarray, tuple[int, int]]:
        subsampling = 0 if self.rng.random() < self.config.chroma_444_share else 2
        phase = phase or (int(self.rng.integers(8)), int(self.rng.integers(8)))
        return jpeg_roundtrip(lr, quality, subsampling, phase), phase

    def __call__(self, hr: np.ndarray, scale: int) -> Degraded:
        """uint8 HR patch (sides divisible by scale) -> uint8 LR patch, strength 0..1 and JPEG grid."""
        h, w = hr.shape[:2]
        cfg = self.config
        if self.rng.random() < cfg.clean_share:
            return Degraded(np.asarray(Image.fromarray(hr).resize((w // scale, h // scale), Image.BICUBIC)), 0.0)
        if self.rng.random() < cfg.blur_share:
            hr = self._blur(hr, scale)
        resample = self._resamplers[self.rng.choice(len(self._resamplers), p=self._resampler_p)]
        lr = np.asarray(Image.fromarray(hr).resize((w // scale, h // scale), resample))
        sigma = 0.0
        if self.rng.random() < cfg.noise_share:
            lr, sigma = self._noise(lr)
        quality, grid = None, None
        if self.rng.random() < cfg.jpeg_share:
            quality = int(self.rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
            lr, grid = self._jpeg(lr, quality)
            if self.rng.random() < cfg.second_jpeg_share:
                second = int(self.rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
                same = self.rng.random() < cfg.second_jpeg_same_grid_share
                lr, grid = self._jpeg(lr, second, grid if same else None)
                quality = min(quality, second)
        return Degraded(lr, strength_of(quality, sigma), grid)
