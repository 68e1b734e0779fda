"""Benchmark evaluation following the protocols of ``../shared/data/README.md``.

HR images are modcropped and degraded with Pillow's bicubic. The *clean* protocol feeds that LR as a
lossless file; the *jpegQ* protocols save it as a JPEG file of quality Q (what users upload), *noise*
adds seeded Gaussian colour noise (sigma 10) before saving it losslessly, *noise_jpeg90* adds the same
noise before saving it as a JPEG of quality 90 (a camera's high-ISO photo), and *grey_noise* adds grey
(luminance) noise of sigma 6 before saving it losslessly (a raw converter's TIFF, its colour noise reduced, its
luminance noise left); the *webpQ* protocols save the LR as a lossy WebP of quality Q (libwebp through Pillow, its
defaults: what web pages and CDNs serve), the *heifQ* ones as a HEIC (pillow-heif's x265) of quality Q, the *avifQ* ones
as an AVIF (Pillow's libavif) of quality Q. The estimate is compared to the
HR image on the Y channel after shaving ``scale`` pixels per border. Bicubic of the same LR file is the
baseline.

``score`` runs an in-memory callable (training validation); ``evaluate_files`` writes every LR as a real
file and runs it through ``worker.render.render``, the path a job takes (``upscaler eval``).
"""

from __future__ import annotations

import functools
import io
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from shared.errors import Refusal
from shared.formats import is_image_name, open_image
from shared.sizing import SizeRequest
from worker.quality import bicubic_downscale, modcrop, psnr_y, ssim_y

Upscaler = Callable[[np.ndarray, int], np.ndarray]
BENCHMARK_SETS = ("set5", "set14", "bsd68")
PROTOCOLS = ("clean", "jpeg98", "jpeg90", "jpeg75", "jpeg50", "jpeg30", "webp95", "webp90", "webp75", "webp50",
             "heif50", "heif30", "avif75", "avif50", "avif30", "noise", "noise_jpeg90", "grey_noise",
             "jpeg90_png", "jpeg75_png", "jpeg50_png", "jpeg50_jpeg90", "jpeg75_jpeg95")
NOISE_SIGMA = 10.0
GREY_NOISE_SIGMA = 6.0  # under the luma floor: found by the two-scale reading (worker.input_profile)


@dataclass(frozen=True)
class SetScore:
    """Mean Y-PSNR (dB) and Y-SSIM of one method on one benchmark set at one scale."""

    psnr: float
    ssim: float
    images: int
    per_image: tuple[float, ...] = ()


def load_benchmark(folder: Path, limit: int | None = None) -> list[np.ndarray]:
    """The images of a benchmark folder (sorted; the first ``limit``) as uint8 RGB (grey replicated): the files an
    input folder's images are (``shared.formats.is_image_name``)."""
    folder = Path(folder)
    if not folder.is_dir():
        known = sorted(p.name for p in folder.parent.iterdir() if p.is_dir()) if folder.parent.is_dir() else []
        raise FileNotFoundError(f"no benchmark set {folder.name!r} in {folder.parent}"
                                + (f" (there: {', '.join(known)})" if known else ""))
    images = []
    for path in sorted(p for p in folder.iterdir() if is_image_name(p.name) and p.is_file())[:limit]:
        with open_image(path) as image:
            images.append(np.asarray(image.convert("RGB")))
    if not images:
        raise FileNotFoundError(f"no benchmark images in {folder}")
    return images


# The lossy protocols' codecs: protocol prefix -> (Pillow format, file suffix). Each writes with its encoder's
# defaults (Pillow's libjpeg 4:2:0, libwebp, pillow-heif's x265, Pillow's libavif) at the protocol's quality.
LOSSY_CODECS = {"jpeg": ("JPEG", ".jpg"), "webp": ("WEBP", ".webp"), "heif": ("HEIF", ".heic"),
                "avif": ("AVIF", ".avif")}


class MissingWriter(Refusal):
    """A protocol's files cannot be written here: said before anything is measured, in one line."""


@functools.cache
def register_heif_writer() -> None:
    """Teach Pillow to *write* HEIF: pillow-heif, which bundles the x265 encoder (GPL), so it is only in the dev
    extra; a deployment reads HEIC with pi-heif (``shared.formats.register_decoders``)."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError as exc:
        raise MissingWriter("writing HEIC files (the heifQ protocols) needs pillow-heif: "
                            "pip install -e '.[dev]'") from exc
    register_heif_opener(thumbnails=False)


def check_writers(protocols: Sequence[str]) -> None:
    """Every codec ``protocols`` write files with is there (``MissingWriter`` otherwise): checked before the first
    measurement, not after the earlier protocols' tables were printed and lost."""
    if any(protocol.startswith("heif") for protocol in protocols):
        register_heif_writer()


def lossy_file(lr: np.ndarray, fmt: str, quality: int) -> bytes:
    """The LR image as a user's lossy file of ``fmt`` (a Pillow format name) at ``quality``."""
    if fmt == "HEIF":
        register_heif_writer()
    buffer = io.BytesIO()
    Image.fromarray(lr).save(buffer, fmt, quality=quality)
    return buffer.getvalue()


def jpeg_file(lr: np.ndarray, quality: int) -> bytes:
    """The LR image as a user's JPEG file: Pillow's encoder, its default 4:2:0 chroma subsampling."""
    return lossy_file(lr, "JPEG", quality)


def decode(data: bytes) -> np.ndarray:
    with open_image(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


# Protocols of a JPEG saved again, their stages left to right as in "noise_jpeg90": "jpeg75_png" is a JPEG of
# quality 75 decoded and saved as PNG (as editors, CMSs and screenshots do), its block grid moved off the corner as
# a crop leaves it (the LR is padded by these rows and columns before the encode and cropped back after decoding,
# so it stays aligned with the HR); "jpeg50_jpeg90" is a JPEG of quality 50 decoded and saved again at 90 (a
# re-save on the same grid).
RESAVED_GRID_SHIFT = (3, 5)


def lr_file(hr: np.ndarray, scale: int, protocol: str, seed: int = 0) -> tuple[bytes, str]:
    """The LR input of one protocol as file bytes and their suffix."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    lr = bicubic_downscale(hr, scale)
    first, _, resaved_as = protocol.partition("_") if protocol.startswith("jpeg") else (protocol, "", "")
    if not resaved_as:
        return _file_of(lr, protocol, seed)
    if resaved_as == "png":
        top, left = RESAVED_GRID_SHIFT
        padded = np.pad(lr, ((top, 0), (left, 0), (0, 0)), mode="edge")
        return _png(decode(_file_of(padded, first, seed)[0])[top:, left:]), ".png"
    return _file_of(decode(_file_of(lr, first, seed)[0]), resaved_as, seed)


def _file_of(lr: np.ndarray, protocol: str, seed: int) -> tuple[bytes, str]:
    """``lr`` damaged and saved as one protocol says (noise, then a lossy codec at a quality, or PNG)."""
    if protocol.startswith("noise") or protocol == "grey_noise":
        grey = protocol == "grey_noise"  # the same noise in R, G and B: luminance noise, as after chroma NR
        shape, sigma = ((*lr.shape[:2], 1), GREY_NOISE_SIGMA) if grey else (lr.shape, NOISE_SIGMA)
        noise = np.random.default_rng(seed).standard_normal(shape) * sigma
        lr = np.clip(np.round(lr + noise), 0, 255).astype(np.uint8)
    for codec, (fmt, suffix) in LOSSY_CODECS.items():
        if codec in protocol:
            return lossy_file(lr, fmt, int(protocol.rsplit(codec, 1)[1])), suffix
    return _png(lr), ".png"


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def _summarise(hrs: list[np.ndarray], estimates: list[np.ndarray], scale: int, with_ssim: bool) -> SetScore:
    psnrs = [psnr_y(hr, est, shave=scale) for hr, est in zip(hrs, estimates, strict=True)]
    ssims = [ssim_y(hr, est, shave=scale) for hr, est in zip(hrs, estimates, strict=True)] if with_ssim else []
    return SetScore(float(np.mean(psnrs)), float(np.mean(ssims)) if ssims else float("nan"), len(hrs), tuple(psnrs))


def score(upscale: Upscaler, images: list[np.ndarray], scale: int, with_ssim: bool = True,
          jpeg_quality: int | None = None) -> SetScore:
    """Mean PSNR/SSIM of ``upscale`` over ``images`` at ``scale``; with ``jpeg_quality`` the LR goes
    through a JPEG file of that quality first (the second protocol)."""
    hrs = [modcrop(image, scale) for image in images]
    estimates = []
    for hr in hrs:
        lr = bicubic_downscale(hr, scale)
        if jpeg_quality is not None:
            lr = decode(jpeg_file(lr, jpeg_quality))
        estimates.append(upscale(lr, scale))
    return _summarise(hrs, estimates, scale, with_ssim)


def evaluate_files(engines, models: Sequence[str], images: list[np.ndarray], scale: int, protocol: str,
                   with_ssim: bool = True) -> dict[str, SetScore]:
    """Score each model (and names like ``bicubic``) on LR *files* run through ``render``, the job path."""
    from worker.render import render

    hrs = [modcrop(image, scale) for image in images]
    estimates: dict[str, list[np.ndarray]] = {m: [] for m in models}
    with tempfile.TemporaryDirectory(prefix="upscaler-eval-") as tmp:
        for index, hr in enumerate(hrs):
            data, suffix = lr_file(hr, scale, protocol, seed=index)
            source = Path(tmp) / f"lr{suffix}"
            source.write_bytes(data)
            for model in models:
                out = Path(tmp) / "out.png"
                render(source, out, engines, model, SizeRequest(scale=scale), "png")
                with Image.open(out) as result:
                    estimates[model].append(np.asarray(result.convert("RGB")))
    return {m: _summarise(hrs, estimates[m], scale, with_ssim) for m in models}
