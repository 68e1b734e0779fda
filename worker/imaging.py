"""Decoding uploads into what an engine eats (RGB uint8) and putting the result back together.

What users send is messy: EXIF-rotated phone photos, palette GIF-like PNGs, CMYK print JPEGs,
16-bit scans, greyscale with alpha. The network only ever sees RGB; greyscale comes back greyscale,
alpha is upscaled on its own (bicubic), and an RGB ICC profile is carried to the output.
"""

from __future__ import annotations

import functools
import io
import logging
import struct
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps

from shared.errors import NOT_THE_FILES
from shared.formats import open_image
from shared.limits import COLOUR_ONLY_FORMATS
from shared.sizing import SizePlan
from worker import metadata
from worker.alpha_bleed import fill_hidden
from worker.heif_container import read_primary_item
from worker.metadata import Metadata, icc_colour_space
from worker.scratch import scratch

log = logging.getLogger(__name__)
SRGB = ImageCms.createProfile("sRGB")


# Encoding defaults, shared with the streaming writer (worker.streaming).
JPEG_QUALITY = 92
JPEG_FULL_CHROMA_FROM = 90  # from this quality on, JPEG keeps full-resolution chroma (4:4:4)
WEBP_QUALITY = 90
# AVIF: libavif's own default quality; speed 8 of 0..10 (libvips' effort 1 of 0..9, the same AV1 encoder setting):
# at its default 6 a 4 MP picture took 8.2 s against 0.9 s, for files 1.5 % smaller
AVIF_QUALITY = 75
AVIF_SPEED = 8
PNG_COMPRESSION = 1  # zlib level: fast; print-size PNGs are dominated by compression time

# ITU-R 601 luma weights: Pillow's "L" conversion, the Y of Y-PSNR (up to its scale), the noise estimate's luma.
LUMA_601 = (0.299, 0.587, 0.114)

# Modes Pillow can open that the pipeline normalises before splitting off alpha.
CONVERSIONS = {"1": "L", "La": "LA", "PA": "RGBA", "RGBa": "RGBA", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}


@dataclass
class DecodedImage:
    rgb: np.ndarray  # H x W x 3, uint8 (or uint16 for a 16-bit PNG/TIFF, see ``deep``)
    alpha: Image.Image | None  # mode "L", same size, or None
    greyscale: bool
    metadata: Metadata

    @property
    def deep(self) -> bool:
        """16 bits per sample: the network runs on them and a PNG/TIFF output keeps them."""
        return self.rgb.dtype == np.uint16

    @property
    def bits(self) -> int:
        """Bits per sample of the pixels (and of an output written from them at full depth)."""
        return 8 * self.rgb.dtype.itemsize

    def as_8bit(self) -> DecodedImage:
        """The same image at 8 bits per sample (for outputs and paths that only take 8)."""
        if not self.deep:
            return self
        return replace(self, rgb=np.round(self.rgb / 257.0).astype(np.uint8))


def _to_8bit(image: Image.Image) -> Image.Image:
    """16/32-bit single-channel modes -> "L", scaling by the mode's real range."""
    array = np.asarray(image, dtype=np.float64)
    peak = 65535.0 if image.mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
    if image.mode == "F" and array.max(initial=0) <= 1.0:
        peak = 1.0
    return Image.fromarray(np.clip(np.round(array * (255.0 / peak)), 0, 255).astype(np.uint8), "L")


class UnreadableImage(ValueError):
    """The file passed the submit-time sniffing but its pixels cannot be decoded (truncated, corrupt)."""


def decode(path: Path) -> DecodedImage:
    """Open an image file, apply its EXIF orientation and split it into RGB + optional alpha.

    Any decoder failure becomes ``UnreadableImage`` with a plain message: the raw exception text of a codec
    means nothing to a user (it goes to the log instead).
    """
    try:
        return _decode(path)
    except (UnreadableImage, *NOT_THE_FILES):
        raise
    except Exception as exc:
        whole = _with_its_end(path)
        if whole is not None:
            log.info("%s lacks only its JPEG end marker: decoded with it", path.name)
            with scratch("job") as folder:  # never beside the input: the CLI's is the user's own photo folder
                patched = Path(folder) / "whole.jpg"
                patched.write_bytes(whole)
                return decode(patched)
        log.warning("cannot decode %s: %s: %s", path.name, type(exc).__name__, exc)
        raise UnreadableImage("the image data is corrupt or truncated and could not be decoded") from exc


JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"


def _with_its_end(path: Path) -> bytes | None:
    """The bytes of a JPEG that lacks only its end marker (EOI), with one; None for any other file, or where
    libvips is not installed to tell. Some cameras and interrupted copies leave it out: every pixel is there
    (browsers and libvips show it), but Pillow calls the file truncated, and such a job failed input_unreadable
    after it was accepted. A scan cut short still fails: libjpeg warns when the marker comes before its data ends,
    and that warning is libvips' error here."""
    data = path.read_bytes()
    if not data.startswith(JPEG_START) or data.endswith(JPEG_END):
        return None
    try:
        import pyvips
    except ImportError:
        return None
    try:
        pyvips.Image.jpegload_buffer(data + JPEG_END, fail_on="warning").avg()  # every pixel decoded
    except pyvips.Error:
        return None
    return data + JPEG_END


def _decode(path: Path) -> DecodedImage:
    with open_image(path) as opened:
        # read before load: Pillow's TIFF reader turns the pixels while loading and then forgets the tag, and
        # for a PNG whose eXIf follows the pixels this loads them to find it
        orientation = _orientation(opened)
        opened.load()
        ImageOps.exif_transpose(opened, in_place=True)  # in place: a 20 MP photo is not copied twice
        image = opened
        icc = opened.info.get("icc_profile") or _nclx_profile(path, opened.format)
        kept = metadata.read(opened, image, icc, orientation)
    keyed = _keyed_sixteen_bit_png(path, opened, orientation)
    if keyed is not None:
        image = keyed
    elif image.mode == "CMYK":
        image, icc = _cmyk_to_rgb(image, icc), None  # a CMYK profile does not describe RGB pixels
    elif image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        image = _to_8bit(image)
    elif image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode in ("RGB", "L", "1") and "transparency" in image.info:  # a PNG's tRNS colour key: real alpha
        # (a 1-bit one too: made plain grey by CONVERSIONS below, its key was lost while the API counted it alpha)
        image = image.convert("RGBA" if image.mode == "RGB" else "LA")
    elif image.mode in CONVERSIONS:
        image = image.convert(CONVERSIONS[image.mode])

    alpha = None
    if image.mode in ("RGBA", "LA"):
        alpha = image.getchannel("A")
        image = image.convert("RGB" if image.mode == "RGBA" else "L")
    if image.mode == "RGB" and alpha is not None and opened.format == "PNG" and \
            _png_depth_and_colour(path)[1] == PNG_GREY_ALPHA:
        # Pillow reads a 16-bit grey+alpha PNG as RGBA: grey it is (it came back colour, its profile dropped)
        image = image.convert("L")
    elif image.mode == "RGB" and icc and icc_colour_space(icc) == b"GRAY":
        image = image.convert("L") if _channels_equal(image) else image  # other grey files Pillow reads as colour
    greyscale = image.mode == "L"
    if icc and icc_colour_space(icc) != (b"GRAY" if greyscale else b"RGB"):
        # a profile describes the pixels it is written with: grey for grey, RGB for colour (a Lab file's profile
        # went out on its RGB result, which libpng refuses and strict colour-managed readers misapply)
        icc = None
    deep = _sixteen_bit(path, opened.format, orientation) if alpha is None else None
    rgb = deep if deep is not None else np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    gamma = opened.info.get("gamma") if opened.format == "PNG" and not icc and "srgb" not in opened.info else None
    if gamma:
        rgb = _as_srgb_gamma(rgb, float(gamma))
    if alpha is not None:  # what was hidden under alpha 0 would bleed into the upscaled edges
        rgb = fill_hidden(rgb, np.asarray(alpha))
    return DecodedImage(rgb=rgb, alpha=alpha, greyscale=greyscale, metadata=replace(kept, icc=icc))


def _as_srgb_gamma(rgb: np.ndarray, file_gamma: float) -> np.ndarray:
    """A PNG's pixels re-encoded from the gamma its gAMA chunk states (no ICC profile, no sRGB chunk) to sRGB's
    2.2, so the result, which carries no gAMA, shows the tones the input showed (an old Mac PNG at gamma 1.8 came
    out about 17 levels brighter at mid-grey than it was shown)."""
    exponent = 1 / (file_gamma * 2.2)
    if not 0.2 < exponent < 5 or abs(exponent - 1) < 0.02:  # sRGB already (0.45455), or a value nobody means
        return rgb
    top = np.iinfo(rgb.dtype).max
    if rgb.dtype == np.uint8:
        return np.rint(top * (np.arange(256) / top) ** exponent).astype(np.uint8)[rgb]
    return np.rint(top * (rgb.astype(np.float32) / top) ** exponent).astype(rgb.dtype)


def _channels_equal(image: Image.Image) -> bool:
    red, green, blue = (np.asarray(channel) for channel in image.split())
    return bool(np.array_equal(red, green) and np.array_equal(green, blue))


def _orientation(opened: Image.Image) -> int:
    """The EXIF orientation; a damaged EXIF block is dropped and turns nothing, as the API's size check reads it
    (it failed the whole job as unreadable pixels, which were fine)."""
    try:
        return opened.getexif().get(metadata.ORIENTATION, 1)
    except (ValueError, SyntaxError, struct.error) as exc:
        log.info("ignoring a damaged EXIF block: %s", exc)
        for key in ("exif", "Raw profile type exif"):
            opened.info.pop(key, None)
        return 1


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Stored pixels (H x W [x C]) as shown under an EXIF orientation: the transforms of ``exif_transpose``."""
    turned = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
              5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
              8: lambda a: np.rot90(a)}.get(orientation)
    return np.ascontiguousarray(turned(pixels)) if turned else pixels


def _cmyk_to_rgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    """CMYK pixels as (untagged) sRGB: through the file's own CMYK profile where it has one.

    Why: print work arrives as CMYK JPEGs with the press's profile, and Pillow's formula conversion ignores it:
    measured on patches exported through a CMYK profile, greens came back 30-90 levels off and greys 20 darker.
    Relative colorimetric with black-point compensation, Photoshop's default for a conversion (the press's black
    becomes the screen's). A file without one is taken to be in a generic press profile, as Photoshop and libvips
    take it (libvips' own, where the worker has libvips: the formula made 100 % cyan (0, 255, 255) where a press
    prints about (0, 153, 228)); only where neither can be read is the formula left."""
    profile = icc if icc and icc_colour_space(icc) == b"CMYK" else _generic_cmyk_profile()
    if profile:
        try:
            return ImageCms.profileToProfile(image, ImageCms.ImageCmsProfile(io.BytesIO(profile)), SRGB,
                                             renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
                                             outputMode="RGB", flags=ImageCms.Flags.BLACKPOINTCOMPENSATION)
        except ImageCms.PyCMSError as exc:
            log.warning("cannot apply the image's CMYK profile (%s); converting by formula", exc)
    return image.convert("RGB")


def _generic_cmyk_profile() -> bytes | None:
    """libvips' built-in CMYK profile (public domain), None where libvips is not installed (the streaming extra)."""
    return _builtin_profile("cmyk")


@functools.cache
def _builtin_profile(name: str) -> bytes | None:
    """One of libvips' built-in ICC profiles (``cmyk``, ``p3``: public domain), None where libvips is not installed
    (the streaming extra) or lacks it."""
    try:
        import pyvips
    except ImportError:
        return None
    try:
        return pyvips.Image.black(1, 1, bands=3).copy(interpretation="srgb").icc_export(
            output_profile=name).get("icc-profile-data")
    except pyvips.Error as exc:
        log.warning("libvips has no %s profile (%s)", name, exc)
        return None


# A HEIF or AVIF file states its colours by code points (ITU-T H.273) where it carries no ICC profile: Display P3's
# primaries (12), with an SDR transfer that displays as sRGB's curve (BT.709, BT.601, sRGB, BT.2020's 10/12-bit, or
# none stated). HDR transfers (PQ, HLG) and other primaries are not turned into a profile.
NCLX_DISPLAY_P3, SDR_TRANSFERS = 12, frozenset({1, 2, 6, 13, 14, 15})
CONTAINER_ITEMS = {"HEIF": b"hvc1", "AVIF": b"av01"}


def _nclx_profile(path: Path, fmt: str | None) -> bytes | None:
    """A Display P3 ICC profile for a HEIF or AVIF whose colour box (``colr`` of type ``nclx``) says P3 and which
    carries no profile of its own; None for any other file (or without libvips, whose built-in profile it is).

    Why: phones and exporters write wide-gamut HEIC and AVIF photos this way, the decoders give their P3 pixels as
    they are and drop the code points, and the result, untagged, was shown as sRGB: every saturated colour dulled.
    The pixels stay as they are, tagged, as a P3 JPEG's are."""
    item_type = CONTAINER_ITEMS.get(fmt or "")
    if item_type is None:
        return None
    with open(path, "rb") as fh:
        item = read_primary_item(fh, item_type)
    colour = item.properties.get(b"colr", b"") if item else b""
    if colour[:4] != b"nclx" or len(colour) < 8:
        return None
    primaries, transfer = struct.unpack(">HH", colour[4:8])
    if primaries != NCLX_DISPLAY_P3 or transfer not in SDR_TRANSFERS:
        return None
    return _builtin_profile("p3")


def vips_image(path: Path, **options):
    """A libvips image of the file at ``path`` (``options`` as ``new_from_file`` takes them), opened through a file
    descriptor. Why not by name: libvips takes names as UTF-8 only (pyvips encodes them strictly), and a Linux file
    name is bytes, where a ``café.png`` named on a Latin-1 system is not UTF-8; read by name, such a valid image
    was said to be corrupt."""
    import pyvips

    with open(path, "rb") as fh:
        source = pyvips.Source.new_from_descriptor(fh.fileno())  # libvips keeps a descriptor of its own
    return pyvips.Image.new_from_source(source, "", **options)


def _keyed_sixteen_bit_png(path: Path, opened: Image.Image, orientation: int) -> Image.Image | None:
    """A 16-bit PNG with a tRNS colour key as 8-bit RGBA or LA whose alpha is the key, read by libvips; None for
    any other file (or without libvips).

    Pillow compares a 16-bit key with the 8-bit pixels it makes (half a photo's blue sky went transparent for a key
    that one pixel matched), and drops a 16-bit grey image's key (the API had said the job has alpha)."""
    if opened.format != "PNG" or "transparency" not in opened.info or _png_depth_and_colour(path)[0] != 16:
        return None
    try:
        import pyvips
    except ImportError:
        return None
    try:
        pixels = orient(vips_image(path).numpy(), orientation)
    except pyvips.Error as exc:  # Pillow's reading stands
        log.info("cannot read %s's 16-bit colour key with libvips (%s)", path.name, str(exc).splitlines()[0])
        return None
    if pixels.ndim != 3 or pixels.shape[2] not in (2, 4):
        return None
    eight = ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)  # 65535 -> 255, rounded
    return Image.fromarray(eight, "RGBA" if eight.shape[2] == 4 else "LA")


PNG_GREY_ALPHA = 4  # IHDR colour type of grey + alpha


def _png_depth_and_colour(path: Path) -> tuple[int, int]:
    """The bit depth and colour type in a PNG's IHDR (the file's 25th and 26th bytes); (0, 0) if cut short."""
    with open(path, "rb") as fh:
        header = fh.read(26)
    return (header[24], header[25]) if len(header) == 26 else (0, 0)


def _sixteen_bit(path: Path, fmt: str | None, orientation: int) -> np.ndarray | None:
    """A 16-bit PNG or TIFF without alpha at its full depth (H x W x 3 uint16), or None.

    Pillow reads 16-bit colour as 8 bits, so these are read again by libvips (which the worker has; without it
    the 8-bit pixels stand), turned by the orientation Pillow read (libvips' own autorot missed an eXIf after
    the pixels and ImageMagick's raw EXIF profile, which Pillow, the API's size check and the 8-bit path read).
    """
    if fmt not in ("PNG", "TIFF"):
        return None
    try:
        import pyvips
    except ImportError:
        return None
    try:
        image = vips_image(path)
        if image.format != "ushort" or image.bands not in (1, 3):
            return None
        pixels = orient(image.numpy(), orientation)
    except pyvips.Error as exc:  # a file Pillow decoded (a CIELab TIFF...) stands in 8 bits, not "corrupt"
        log.info("libvips cannot read %s at full depth (%s); using its 8-bit pixels", path.name,
                 str(exc).splitlines()[0])
        return None
    return np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels


def _grey_to_srgb(image: Image.Image, icc: bytes) -> Image.Image:
    """A grey image (alpha kept) in sRGB through its own profile; as it is where the profile cannot be read."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        rgb = ImageCms.profileToProfile(image.convert("L"), profile, SRGB, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError) as exc:
        log.warning("grey ICC profile not applied: %s", exc)
        return image
    if image.mode == "LA":
        rgb.putalpha(image.getchannel("A"))
    return rgb


def output_pixels(rgb: np.ndarray, greyscale: bool) -> np.ndarray:
    """A band of the engine's RGB output in the source's kind (greyscale: Pillow's luma, as ``compose`` makes;
    the same ITU-R 601 weights at 16 bits)."""
    if not greyscale:
        return rgb
    if rgb.dtype == np.uint8:
        return np.asarray(Image.fromarray(rgb).convert("L"))
    per_mille = np.array([round(w * 1000) for w in LUMA_601], np.uint64)  # integers, rounded as Pillow does
    return (((rgb.astype(np.uint64) * per_mille).sum(axis=-1) + 500) // 1000).astype(rgb.dtype)


def compose(upscaled_rgb: Image.Image, source: DecodedImage, planned: SizePlan | None = None) -> Image.Image:
    """Turn the engine's RGB output back into the source's kind of image (grey, alpha); the alpha plane follows
    the same resize (and cover crop) as the pixels."""
    image = upscaled_rgb.convert("L") if source.greyscale else upscaled_rgb
    if source.alpha is not None:
        alpha = source.alpha.resize(planned.resize_to if planned else image.size, Image.BICUBIC)
        if planned and planned.crop:
            alpha = alpha.crop(planned.crop)
        image = image.convert("LA" if source.greyscale else "RGBA")
        image.putalpha(alpha)
    return image


def encode(image: Image.Image, output_format: str, path: Path, quality: int | None, meta: Metadata) -> None:
    """Write the result with its metadata. JPEG has no alpha (flattened onto white); PNG is compressed fast."""
    if metadata.turns_grey_to_srgb(meta, output_format, image.mode in ("L", "LA")):
        image, meta = _grey_to_srgb(image, meta.icc), replace(meta, icc=None)
    options = metadata.save_options(metadata.for_format(meta, output_format), output_format)
    if output_format == "jpeg":
        if image.mode in ("RGBA", "LA"):
            background = Image.new("RGB" if image.mode == "RGBA" else "L", image.size, "white")
            background.paste(image, mask=image.getchannel("A"))
            image = background
        q = quality or JPEG_QUALITY
        image.save(path, "JPEG", quality=q, subsampling=0 if q >= JPEG_FULL_CHROMA_FROM else 2, **options)
    elif output_format in COLOUR_ONLY_FORMATS:
        if image.mode in ("L", "LA"):
            image = image.convert("RGBA" if image.mode == "LA" else "RGB")
        if output_format == "webp":
            image.save(path, "WEBP", quality=quality or WEBP_QUALITY, method=4, **options)
        else:  # the profile named, None too: Pillow's AVIF writer took one left in ``image.info`` (a conversion's)
            q = quality or AVIF_QUALITY  # full chroma from the quality JPEG has it, as libvips' "auto" does
            image.save(path, "AVIF", quality=q, speed=AVIF_SPEED, subsampling="4:4:4" if q >= JPEG_FULL_CHROMA_FROM
                       else "4:2:0", **{"icc_profile": None, **options})
    elif output_format == "tiff":  # for print: lossless, Deflate-compressed, alpha kept
        image.save(path, "TIFF", compression="tiff_adobe_deflate", **options)
    else:
        image.save(path, "PNG", compress_level=PNG_COMPRESSION, **options)
