"""Decoding the messy images users send, and putting results back together."""

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, PngImagePlugin

from shared.settings import Settings
from shared.sizing import SizeRequest
from worker.engine.base import BicubicEngine
from worker.engine.registry import EngineRegistry
from worker.imaging import UnreadableImage, compose, decode, encode
from worker.render import render


def save(tmp_path, image, fmt="PNG", **options):
    path = tmp_path / f"in.{fmt.lower()}"
    image.save(path, fmt, **options)
    return path


def gradient(mode="RGB", size=(20, 10)):
    w, h = size
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 0] = np.linspace(0, 255, w)[None, :]
    arr[..., 1] = np.linspace(0, 255, h)[:, None]
    return Image.fromarray(arr).convert(mode)


def test_exif_orientation_is_applied(tmp_path):
    image = gradient(size=(20, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    decoded = decode(save(tmp_path, image, "JPEG", exif=exif))
    assert decoded.rgb.shape == (20, 10, 3)


@pytest.mark.parametrize("mode,greyscale,has_alpha", [("RGB", False, False), ("L", True, False), ("LA", True, True),
                                                      ("RGBA", False, True), ("P", False, False), ("1", True, False)])
def test_modes_become_rgb_with_alpha_and_greyness_remembered(tmp_path, mode, greyscale, has_alpha):
    decoded = decode(save(tmp_path, gradient(mode)))
    assert decoded.rgb.shape == (10, 20, 3) and decoded.rgb.dtype == np.uint8
    assert decoded.greyscale == greyscale
    assert (decoded.alpha is not None) == has_alpha


def test_palette_with_transparency_keeps_alpha(tmp_path):
    image = gradient("P")
    image.info["transparency"] = 0
    decoded = decode(save(tmp_path, image, transparency=0))
    assert decoded.alpha is not None


@pytest.mark.parametrize("mode,key,ink", [("RGB", (10, 20, 30), (200, 100, 50)), ("L", 7, 180), ("1", 0, 255)])
def test_a_png_colour_key_becomes_alpha_and_stays_transparent(tmp_path, mode, key, ink):
    """A tRNS colour key in an RGB or grey PNG (not only a palette's) is transparency: it was once dropped, and
    a 1-bit one (line art or a signature on a transparent ground, as PNG optimizers reduce it) still was, while
    the API had taken it for transparent."""
    image = Image.new(mode, (20, 10), key)
    image.paste(ink, (0, 0, 10, 10))
    source = save(tmp_path, image, transparency=key)
    decoded = decode(source)
    alpha = np.asarray(decoded.alpha)
    assert (alpha[0, 0], alpha[0, 15]) == (255, 0)
    result = tmp_path / "out.png"
    render(source, result, EngineRegistry(Settings()), "bicubic", SizeRequest(scale=2), "png")
    with Image.open(result) as out:
        assert out.mode in ("RGBA", "LA") and out.getchannel("A").getpixel((35, 5)) == 0


def grey_profile(gamma: float) -> bytes:
    """A minimal ICC v2 grey profile (D50 white, one gamma curve), as "Gray Gamma 1.8" and friends are."""
    import struct

    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    tags = [(b"wtpt", b"XYZ " + bytes(4) + s15(0.9642) + s15(1.0) + s15(0.8249)),
            (b"kTRC", b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)),
            (b"desc", b"desc" + bytes(4) + struct.pack(">I", 5) + b"grey\0" + bytes(4 + 4 + 2 + 1 + 67))]
    offset, table, data = 128 + 4 + 12 * len(tags), b"", b""
    for signature, blob in tags:
        blob += bytes(-len(blob) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(blob))
        data += blob
    header = (struct.pack(">I", offset + len(data)) + b"lcms" + struct.pack(">I", 0x02100000) + b"mntrGRAYXYZ "
              + bytes(12) + b"acspAPPL" + bytes(24) + s15(0.9642) + s15(1.0) + s15(0.8249) + bytes(48))
    return header + struct.pack(">I", len(tags)) + table + data


def test_a_grey_profile_is_applied_not_written_into_a_colour_webp(tmp_path):
    """WebP has no grey mode: the grey input becomes RGB there, and a GRAY profile on RGB pixels is a file
    colour-managed software cannot read (it stays in PNG, where the output is grey). Dropped alone, the tones
    were read as sRGB: a "Gray Gamma 1.8" photo came out 18 levels darker at mid-grey. They are turned into
    sRGB through the profile instead."""
    grey = grey_profile(1.8)
    flat = Image.new("L", (16, 12), 128)
    source = save(tmp_path, flat, "PNG", icc_profile=grey)
    as_srgb = ImageCms.profileToProfile(flat, ImageCms.ImageCmsProfile(io.BytesIO(grey)),
                                        ImageCms.createProfile("sRGB"), outputMode="RGB").getpixel((0, 0))
    assert abs(as_srgb[0] - 128) > 10  # the profile does move mid-grey
    engines = EngineRegistry(Settings(inference_precision="float32"))
    for fmt, kept, model, bands in (("webp", None, "bicubic", None), ("png", grey, "bicubic", None),
                                    ("webp", None, "residual_sr", 100),  # streamed by libvips, band by band
                                    ("avif", None, "bicubic", None), ("avif", None, "residual_sr", 100)):
        result = tmp_path / f"out.{fmt}"
        rendered = render(source, result, engines, model, SizeRequest(scale=2), fmt, band_pixels=bands)
        assert (rendered.bands > 0) == (bands is not None)
        with Image.open(result) as out:
            assert out.info.get("icc_profile") == kept, fmt
            shown = out.convert("RGB").getpixel((8, 6))
        expected = as_srgb if fmt in ("webp", "avif") else (128,) * 3
        assert max(abs(a - b) for a, b in zip(shown, expected, strict=True)) <= 2, fmt


def test_a_sixteen_bit_grey_png_with_alpha_stays_grey_with_its_profile(tmp_path):
    """Pillow reads a 16-bit grey+alpha PNG as RGBA: it went through as colour, its GRAY profile written into an
    RGBA result that colour-managed software cannot read. Equal channels are grey; a colour image never carries
    a grey profile."""
    import pyvips

    pixels = np.zeros((12, 16, 2), np.uint16)
    pixels[..., 0], pixels[..., 1] = np.linspace(0, 65535, 16)[None, :], 65535
    path = tmp_path / "la16.png"
    image = pyvips.Image.new_from_memory(pixels.tobytes(), 16, 12, 2, "ushort").copy(interpretation="grey16")
    image.set_type(pyvips.GValue.blob_type, "icc-profile-data", grey_profile(2.2))
    image.pngsave(str(path))
    with Image.open(path) as opened:
        assert opened.mode == "RGBA"  # how Pillow reads it
    decoded = decode(path)
    assert decoded.greyscale and decoded.alpha is not None and decoded.metadata.icc == grey_profile(2.2)
    colour = save(tmp_path, gradient("RGB"), "PNG", icc_profile=grey_profile(2.2))
    assert decode(colour).metadata.icc is None
    plain = tmp_path / "la16-plain.png"  # with no profile to say so it came back colour (RGBA, R = G = B)
    pyvips.Image.new_from_memory(pixels.tobytes(), 16, 12, 2, "ushort").copy(interpretation="grey16").pngsave(
        str(plain))
    result = tmp_path / "out.png"
    render(plain, result, EngineRegistry(Settings()), "bicubic", SizeRequest(scale=2), "png")
    with Image.open(result) as out:
        assert out.mode == "LA" and out.size == (32, 24)


def test_cmyk_is_converted_and_its_profile_dropped(tmp_path):
    decoded = decode(save(tmp_path, gradient("CMYK"), "JPEG"))
    assert decoded.rgb.shape == (10, 20, 3) and decoded.metadata.icc is None


def test_a_profile_of_another_colour_model_is_not_carried_onto_rgb_pixels(tmp_path):
    """A Lab file's profile (a Lab TIFF as libvips writes it) went out on its RGB result: libpng refuses a non-RGB
    iCCP in an RGB PNG, and strict colour-managed readers misapply it. An RGB profile is kept, as before."""
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert lab[16:20] == b"Lab " and srgb[16:20] == b"RGB "
    assert decode(save(tmp_path, gradient(), "TIFF", icc_profile=lab)).metadata.icc is None
    assert decode(save(tmp_path, gradient(), "TIFF", icc_profile=srgb)).metadata.icc == srgb


def test_a_cmyk_jpeg_without_a_profile_is_read_through_a_generic_press_profile(tmp_path):
    """Pillow's formula made 100 % cyan (0, 255, 255) and 100 % magenta (255, 0, 255), colours no press prints;
    like Photoshop and libvips, an untagged CMYK file is now read through a generic press profile (libvips')."""
    patches = np.zeros((8, 16, 4), np.uint8)
    patches[:, :8, 0] = 255  # cyan
    patches[:, 8:, 1] = 255  # magenta
    decoded = decode(save(tmp_path, Image.fromarray(patches, "CMYK"), "JPEG", quality=100))
    cyan, magenta = decoded.rgb[4, 2].astype(int), decoded.rgb[4, 12].astype(int)
    assert cyan[0] < 40 and 120 < cyan[1] < 190 and cyan[2] > 190, cyan  # a press's cyan, not (0, 255, 255)
    assert magenta[0] > 190 and magenta[1] < 60 and 90 < magenta[2] < 170, magenta


def test_a_cmyk_jpeg_with_its_press_profile_comes_out_in_its_own_colours(tmp_path):
    """Pillow's formula conversion ignored the embedded profile (greens 30-90 levels off, greys 20 darker). The
    reference is an independent converter: libvips through the same profile (relative, black point compensated)."""
    pyvips = pytest.importorskip("pyvips")
    patches = np.array([[30, 160, 60], [40, 60, 200], [128, 128, 128], [220, 40, 40], [250, 220, 30], [20, 20, 20]],
                       np.uint8)
    srgb = np.repeat(np.repeat(patches[None], 16, axis=0), 16, axis=1)
    path = tmp_path / "press.jpg"
    cmyk = pyvips.Image.new_from_array(srgb, interpretation="srgb").icc_export(output_profile="cmyk")
    cmyk.jpegsave(str(path), Q=95, profile="cmyk")  # libvips' built-in CMYK profile, embedded
    with Image.open(path) as opened:
        assert opened.mode == "CMYK" and opened.info.get("icc_profile")
        formula = np.asarray(opened.convert("RGB"), np.int16)
    reference = pyvips.Image.new_from_file(str(path)).icc_transform("srgb", black_point_compensation=True).numpy()
    decoded = decode(path)
    assert decoded.metadata.icc is None  # the pixels are sRGB now
    centres = (slice(4, 12), slice(None))
    ours, expected = decoded.rgb.astype(np.int16)[centres], reference.astype(np.int16)[centres]
    assert np.abs(ours - expected).max() <= 2
    assert np.abs(formula[centres] - expected).max() > 30  # the old conversion was far off: the test can tell


def test_a_tiff_libvips_cannot_read_is_decoded_by_pillow(tmp_path):
    """The 16-bit probe runs libvips on every PNG/TIFF without alpha; a CIELab TIFF it refuses failed the job as
    'corrupt or truncated' though Pillow had decoded it."""
    path = save(tmp_path, gradient("LAB"), "TIFF")
    decoded = decode(path)
    assert decoded.rgb.shape == (10, 20, 3) and decoded.rgb.dtype == np.uint8


def test_a_jpeg_keeps_what_fits_of_an_oversized_exif():
    """A camera's maker notes can pass a JPEG segment's 64 kB: IFD0 (copyright) stays, the rest goes."""
    from worker.metadata import JPEG_MAX_EXIF, Metadata, for_format

    exif = Image.Exif()
    exif[0x8298] = "(c) Studio Nord"
    exif.get_ifd(0x8769)[0x927C] = b"\x01" * 70_000  # MakerNote
    meta = for_format(Metadata(exif=exif.tobytes(), dpi=(300.0, 300.0)), "jpeg")
    assert len(meta.exif) <= JPEG_MAX_EXIF
    kept = Image.Exif()
    kept.load(meta.exif)
    assert kept[0x8298] == "(c) Studio Nord" and not kept.get_ifd(0x8769)
    image = Image.new("RGB", (8, 8))
    image.save(io.BytesIO(), "JPEG", exif=meta.exif)  # it fits


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path):
    arr = np.linspace(0, 65535, 200, dtype=np.uint16).reshape(10, 20)
    decoded = decode(save(tmp_path, Image.fromarray(arr)))
    assert decoded.greyscale and decoded.deep  # read at full depth (worker/imaging.py)
    assert decoded.rgb[..., 0].min() == 0 and decoded.rgb[..., 0].max() == 65535
    eight = decoded.as_8bit().rgb[..., 0]
    assert eight.min() == 0 and eight.max() == 255 and len(np.unique(eight)) > 100


def _deep_photo(tmp_path, bands=3, fmt="png"):
    import pyvips

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:40, 0:56]
    base = np.stack([xx * 1100.0, yy * 1500.0, (xx + yy) * 600.0], -1)[..., :bands]
    pixels = np.clip(base + rng.normal(0, 900, base.shape), 0, 65535).astype(np.uint16)
    image = pyvips.Image.new_from_array(pixels if bands == 3 else pixels[..., 0])
    path = tmp_path / f"deep.{fmt}"
    image.copy(interpretation="rgb16" if bands == 3 else "grey16").write_to_file(str(path))
    return path, pixels


@pytest.mark.parametrize("bands,fmt", [(3, "png"), (3, "tiff"), (1, "png")])
def test_sixteen_bit_inputs_come_back_sixteen_bit_through_the_network(tmp_path, bands, fmt):
    import pyvips

    source, pixels = _deep_photo(tmp_path, bands, "tif" if fmt == "tiff" else "png")
    result = tmp_path / f"out.{fmt}"
    rendered = render(source, result, EngineRegistry(Settings()), "residual_sr", SizeRequest(scale=2), fmt)
    assert rendered.ran()["bits"] == 16
    out = pyvips.Image.new_from_file(str(result))
    assert (out.format, out.width, out.height, out.bands) == ("ushort", 112, 80, bands)
    values = out.numpy().reshape(80, 112, bands)
    assert (values % 257 != 0).mean() > 0.9  # real 16-bit values, not 8-bit ones scaled up
    # the same image through the 8-bit path agrees to within a few 8-bit levels
    eight = tmp_path / "eight.png"
    Image.fromarray(np.round(pixels / 257).astype(np.uint8).squeeze(-1) if bands == 1 else
                    np.round(pixels / 257).astype(np.uint8)).save(eight)
    render(eight, tmp_path / "eight_out.png", EngineRegistry(Settings()), "residual_sr", SizeRequest(scale=2), "png")
    reference = np.asarray(Image.open(tmp_path / "eight_out.png"), dtype=np.float64).reshape(80, 112, bands)
    assert np.abs(values / 257.0 - reference).mean() < 1.0


def test_sixteen_bit_inputs_to_jpeg_or_resampled_sizes_run_at_eight_bits(tmp_path):
    source, _ = _deep_photo(tmp_path)
    for fmt, size in (("jpeg", SizeRequest(scale=2)), ("png", SizeRequest(scale=1.5))):
        result = tmp_path / f"out-{size.describe()}.{fmt}"
        rendered = render(source, result, EngineRegistry(Settings()), "residual_sr", size, fmt)
        assert rendered.ran()["bits"] == 8
        with Image.open(result) as out:
            assert out.mode == "RGB"


def test_alpha_is_upscaled_separately_and_kept(tmp_path):
    image = gradient("RGBA")
    image.putalpha(Image.linear_gradient("L").resize(image.size))
    decoded = decode(save(tmp_path, image))
    out = compose(BicubicEngine().upscale(decoded.rgb, 2), decoded)
    assert out.mode == "RGBA" and out.size == (40, 20)
    alpha = np.asarray(out.getchannel("A"))
    assert alpha.min() < 30 and alpha.max() > 225


@pytest.mark.parametrize("model", ["bicubic", "residual_sr"])
def test_a_cut_out_on_black_upscales_without_a_dark_fringe(tmp_path, model):
    """Exporters keep black (or a key colour) under alpha 0: it bled into the upscaled edge (alpha is resized on its
    own) and the network rang against it, so a product on a white page had a dark outline, down to -115 levels.
    Against Pillow's premultiplied RGBA resize of the same file, composited on white."""
    from PIL import ImageDraw

    big = Image.new("L", (480, 480), 0)
    ImageDraw.Draw(big).ellipse((60, 90, 420, 390), fill=255)
    alpha = big.resize((120, 120), Image.LANCZOS)
    rgb = np.zeros((120, 120, 3), np.uint8)
    rgb[np.asarray(alpha) > 0] = (90, 140, 200)
    source = save(tmp_path, Image.fromarray(np.dstack([rgb, np.asarray(alpha)]), "RGBA"))
    render(source, tmp_path / "out.png", EngineRegistry(Settings(env="test", inference_precision="float32")), model,
           SizeRequest(scale=2), "png")

    def on_white(image: Image.Image) -> np.ndarray:
        page = Image.new("RGB", image.size, "white")
        page.paste(image, mask=image.getchannel("A"))
        return np.asarray(page).astype(int)

    with Image.open(source) as sent, Image.open(tmp_path / "out.png") as made:
        expected, got = on_white(sent.resize((240, 240), Image.BICUBIC)), on_white(made)
    assert (got - expected).min() > -20, (got - expected).min()


def test_colour_hidden_under_alpha_is_filled_from_the_nearest_visible_pixels():
    from worker.alpha_bleed import fill_hidden

    rng = np.random.default_rng(3)
    for dtype, top in ((np.uint8, 255), (np.uint16, 65535)):
        for height, width in ((1, 9), (9, 1), (7, 5), (300, 33)):  # odd sizes, more rows than a band
            rgb = rng.integers(0, top, (height, width, 3), dtype=dtype)
            alpha = (rng.random((height, width)) > 0.8).astype(np.uint8)
            alpha.flat[0] = 1
            filled = fill_hidden(rgb, alpha)
            assert filled.dtype == dtype and (filled[alpha > 0] == rgb[alpha > 0]).all()  # the visible kept
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[:, 40:] = (200, 100, 50)  # visible from column 40 on; black, hidden, left of it
    alpha = np.zeros((64, 64), np.uint8)
    alpha[:, 40:] = 255
    filled = fill_hidden(rgb, alpha)
    assert (filled == (200, 100, 50)).all()  # one colour visible: every hidden pixel takes it
    rgb[:, 40:41] = (10, 250, 10)  # the edge column green: its hidden neighbours take the edge's colour
    assert tuple(fill_hidden(rgb, alpha)[5, 39]) == (10, 250, 10)
    block = rgb[:8, :8]
    for alpha in (np.zeros((8, 8), np.uint8), np.full((8, 8), 255, np.uint8)):  # nothing to fill
        assert fill_hidden(block, alpha) is block


def test_a_size_needing_no_enlargement_says_no_network_ran(tmp_path):
    """Smaller than the input, or a clean file at its own size: the pixels are the input's resampled, and ran
    said so (it named the robust network at strength 1, and an asked denoise that did nothing)."""
    jpeg = save(tmp_path, gradient(size=(40, 30)), "JPEG", quality=50)
    clean = save(tmp_path, gradient(size=(40, 30)), "PNG")
    for source, size, denoise in ((jpeg, SizeRequest(width=20), 1.0), (clean, SizeRequest(scale=1), None),
                                  (jpeg, SizeRequest(scale=1), 0.0)):
        rendered = render(source, tmp_path / "out.png", EngineRegistry(Settings()), "auto", size, "png",
                          denoise=denoise)
        assert (rendered.selection.model, rendered.selection.strength) == ("resample", None), (source, size)
        assert "no network" in rendered.selection.reason and rendered.ran()["network_scales"] == []
    render(clean, tmp_path / "out.png", EngineRegistry(Settings()), "auto", SizeRequest(scale=1), "png")
    with Image.open(clean) as before, Image.open(tmp_path / "out.png") as after:
        assert np.array_equal(np.asarray(before), np.asarray(after))


def _photo_and_jpeg(tmp_path, quality: int) -> tuple[np.ndarray, Path]:
    """A photo (a shipped sample, halved so its own JPEG blocks are gone) and the JPEG a user would send of it."""
    with Image.open(sorted(Path(__file__).parents[2].glob("shared/samples/*.jpg"))[0]) as sample:
        photo = sample.convert("RGB").crop((0, 0, 192, 160)).resize((96, 80), Image.BICUBIC)
    return np.asarray(photo), save(tmp_path, photo, "JPEG", quality=quality)


def test_a_damaged_photo_asked_at_its_own_size_is_restored(tmp_path):
    """x1 of a JPEG was its decoded pixels, blocks and all: the robust network now runs at x2 and its output is
    reduced back, closer to the photo than the file is."""
    from worker.quality import psnr_y

    photo, source = _photo_and_jpeg(tmp_path, 50)
    engines = EngineRegistry(Settings())
    for size in (SizeRequest(scale=1), SizeRequest(width=96, height=80, fit="cover")):
        rendered = render(source, tmp_path / "out.png", engines, "auto", size, "png")
        ran = rendered.ran()
        assert ran["model"] == engines.catalog["auto"].routes["robust"] and ran["strength"] > 0.5
        assert ran["network_scales"] == [2] and ran["resampled"] and "restored at its own size" in ran["reason"]
        with Image.open(tmp_path / "out.png") as out, Image.open(source) as sent:
            assert out.size == sent.size == (96, 80)
            assert psnr_y(photo, np.asarray(out.convert("RGB")), 1) > psnr_y(photo, np.asarray(sent), 1) + 0.5


def test_a_photo_too_large_to_restore_in_memory_is_resampled(tmp_path):
    _, source = _photo_and_jpeg(tmp_path, 50)
    small = EngineRegistry(Settings.from_env(max_whole_output_pixels=96 * 80 * 3))  # its x2 holds 4x its pixels
    rendered = render(source, tmp_path / "out.png", small, "auto", SizeRequest(scale=1), "png")
    assert rendered.ran()["model"] == "resample" and "too large to restore" in rendered.ran()["reason"]


def test_greyscale_stays_greyscale_end_to_end(tmp_path):
    source = save(tmp_path, gradient("L"))
    result = tmp_path / "out.png"
    render(source, result, EngineRegistry(Settings()), "bicubic", SizeRequest(scale=3), "png")
    with Image.open(result) as out:
        assert out.mode == "L" and out.size == (60, 30)


def test_icc_profile_is_carried_to_the_output(tmp_path):
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = save(tmp_path, gradient(), "PNG", icc_profile=profile)
    for fmt in ("png", "jpeg", "webp", "avif"):
        result = tmp_path / f"out.{fmt}"
        render(source, result, EngineRegistry(Settings()), "bicubic", SizeRequest(scale=2), fmt)
        with Image.open(result) as out:
            assert out.info.get("icc_profile") == profile, fmt


def test_jpeg_output_flattens_alpha_onto_white(tmp_path):
    image = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    decoded = decode(save(tmp_path, image))
    path = tmp_path / "o.jpg"
    encode(compose(BicubicEngine().upscale(decoded.rgb, 2), decoded), "jpeg", path, 90, decoded.metadata)
    with Image.open(path) as out:
        assert out.mode == "RGB" and np.asarray(out).min() > 240


def test_corrupt_data_raises_unreadable_in_plain_words(tmp_path):
    path = tmp_path / "bad.png"
    buffer = io.BytesIO()
    gradient().save(buffer, "PNG")
    path.write_bytes(buffer.getvalue()[:60])
    with pytest.raises(UnreadableImage, match="corrupt or truncated"):
        decode(path)


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "avif", "tiff"])
def test_exif_xmp_and_print_size_survive_the_upscale(tmp_path, fmt):
    """A studio's copyright, camera and date stay; orientation is applied once and reset; the pixel size in
    EXIF is the output's; the DPI doubles at x2 so the print size is unchanged."""
    exif = Image.Exif()
    exif[0x8298] = "(c) 2026 Studio Nord"  # Copyright
    exif[0x0110] = "Camera X100"  # Model
    exif[0x0112] = 6  # Orientation: rotate 90 on display
    exif.get_ifd(0x8769)[0x9003] = "2026:11:20 10:00:00"  # DateTimeOriginal
    exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 30.0), 3: "E", 4: (2.0, 17.0, 40.0)})  # where it was shot
    # a drone's position in its own namespace came through when only exif:GPS* was dropped (DJI's, here)
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:ImageWidth="20" tiff:XResolution="300/1" '
           b'exif:GPSLatitude="48,51.5N" drone-dji:GpsLatitude="48.8583" drone-dji:AbsoluteAltitude="+96.5">'
           b'<dc:rights>Studio Nord</dc:rights><exif:PixelXDimension>20</exif:PixelXDimension>'
           b'<exif:GPSLongitude>2,17.6E</exif:GPSLongitude><drone-dji:GpsLongitude>2.2945</drone-dji:GpsLongitude>'
           b'<drone-dji:FlightYawDegree>+12.3</drone-dji:FlightYawDegree></rdf:Description></x:xmpmeta>')
    source = save(tmp_path, gradient(), "JPEG", exif=exif, dpi=(300, 300), xmp=xmp)  # stored 20x10, shown 10x20
    result = tmp_path / f"out.{fmt}"
    render(source, result, EngineRegistry(Settings()), "bicubic", SizeRequest(scale=2), fmt)
    with Image.open(result) as out:
        assert out.size == (20, 40)  # upright
        kept = out.getexif()
        assert kept[0x8298] == "(c) 2026 Studio Nord" and kept[0x0110] == "Camera X100"
        assert kept.get(0x0112, 1) == 1
        if fmt != "tiff":  # compressed TIFF keeps IFD0 only (worker/metadata.py says why)
            assert kept.get_ifd(0x8769)[0x9003] == "2026:11:20 10:00:00"
        if fmt not in ("webp", "avif"):  # WebP and AVIF have no resolution field of their own
            assert tuple(round(v) for v in out.info["dpi"]) == (600, 600)
        assert float(kept[0x011A]) == 600
        assert not kept.get_ifd(0x8825) and 0x8825 not in kept  # no position
        if fmt != "tiff":  # Pillow writes no XMP packet into TIFF (documented)
            found = out.info.get("xmp") or out.info.get("XML:com.adobe.xmp")
            found = found if isinstance(found, bytes) else found.encode()
            assert b"Studio Nord" in found and b"<rdf:Description >" not in found
            # the input's size and resolution are not said beside the result's (Lightroom reads XMP first)
            assert not any(name in found for name in (b"ImageWidth", b"XResolution", b"PixelXDimension", b"GPS",
                                                      b"Gps", b"Altitude", b"48.8", b"2.29"))
            assert b"FlightYawDegree" in found  # how it was flown is no place


def test_a_png_whose_metadata_passes_a_megabyte_is_read_and_keeps_it(tmp_path):
    """An XMP history of 2.4 MB in a compressed iTXt chunk (a converted Photoshop file): Pillow's 1 MB cap on one
    text chunk refused the whole image as "not a readable image", at submit and in the worker."""
    from shared.formats import sniff

    history = b"".join(b"<rdf:li>step %d: levels, curves, healing brush</rdf:li>" % n for n in range(50000))
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:rights>Studio Nord</dc:rights>' + history + b"</x:xmpmeta>"
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp.decode(), zip=True)
    source = save(tmp_path, gradient(), "PNG", pnginfo=info)
    assert len(xmp) > 2_000_000 and source.stat().st_size < 1_000_000
    sniffed = sniff(source.read_bytes(), 10**6)  # the API's check at submit
    assert (sniffed.format, sniffed.width, sniffed.height) == ("png", 20, 10)
    result = tmp_path / "out.png"
    render(source, result, EngineRegistry(Settings()), "bicubic", SizeRequest(scale=2), "png")
    with Image.open(result) as out:
        assert out.size == (40, 20) and b"Studio Nord" in out.info["XML:com.adobe.xmp"].encode()


@pytest.mark.parametrize("fmt", ["jpeg", "png", "tiff"])
def test_a_turned_photo_keeps_each_sides_own_resolution(tmp_path, fmt):
    """300 x 150 dpi stated for the stored pixels, turned a quarter by EXIF: the upright picture's across is the
    stored down (the print came out at the wrong size)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    source = save(tmp_path, gradient(), "JPEG", exif=exif, dpi=(300, 150))
    result = tmp_path / f"out.{fmt}"
    render(source, result, EngineRegistry(Settings()), "bicubic", SizeRequest(scale=2), fmt)
    with Image.open(result) as out:
        assert out.size == (20, 40) and tuple(round(v) for v in out.info["dpi"]) == (300, 600)


def test_an_asked_dpi_is_written_into_the_output(tmp_path):
    source = save(tmp_path, gradient(), "PNG", dpi=(72, 72))
    for fmt in ("png", "jpeg", "tiff"):
        result = tmp_path / f"out.{fmt}"
        render(source, result, EngineRegistry(Settings()), "bicubic", SizeRequest(scale=2), fmt, dpi=300)
        with Image.open(result) as out:
            assert tuple(round(v) for v in out.info["dpi"]) == (300, 300), fmt


@pytest.mark.parametrize(("fit", "expected"), [("cover", (1250, 1250)), ("contain", (937.5, 937.5)),
                                              ("fill", (937.5, 1250))])
def test_a_box_of_another_shape_scales_the_resolution_as_the_pixels_were_scaled(tmp_path, fit, expected):
    """A 4:3 photo at 300 dpi into a 500 x 500 box. Cover scales it x4.17 and cuts the sides: it said 937.5 dpi
    across (the cut taken for a scale) and 1250 down, so print software printed it stretched. Fill stretches the
    pixels, and its two resolutions keep the printed shape."""
    source = save(tmp_path, gradient(size=(160, 120)), "PNG", dpi=(300, 300))
    for fmt in ("png", "jpeg", "tiff"):
        result = tmp_path / f"out.{fmt}"
        render(source, result, EngineRegistry(Settings()), "bicubic", SizeRequest(width=500, height=500, fit=fit), fmt)
        with Image.open(result) as out:
            assert tuple(round(v, 1) for v in out.info["dpi"]) == pytest.approx(expected, abs=1), (fmt, out.size)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_phone_and_web_formats_decode_upright_once_with_their_profile(tmp_path, fmt):
    """An iPhone HEIC carries its rotation as a container transform (pillow-heif applies it and resets the EXIF
    tag), an AVIF as Pillow reports it: either way the picture comes out upright, turned once, ICC kept."""
    from worker.evaluation import register_heif_writer

    register_heif_writer()  # pillow-heif (the dev extra) writes HEIC files
    pixels = np.full((32, 64, 3), 40, np.uint8)
    pixels[:12, :16] = 250  # a bright block at the top-left of the stored picture
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    decoded = decode(save(tmp_path, Image.fromarray(pixels), fmt, quality=90, exif=exif.tobytes(),
                          icc_profile=profile))
    assert decoded.rgb.shape == (64, 32, 3)  # turned: 32 wide, 64 high
    assert decoded.rgb[:16, -12:].mean() > 200 and decoded.rgb[-16:, :12].mean() < 80  # the block went top-right
    assert decoded.metadata.icc == profile


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
@pytest.mark.parametrize(("primaries", "transfer", "tagged"), [(12, 13, True), (12, 1, True), (1, 13, False),
                                                               (12, 16, False)])
def test_a_heic_or_avif_stating_display_p3_by_code_points_comes_out_tagged_p3(tmp_path, fmt, primaries, transfer,
                                                                              tagged):
    """Phones and exporters state a wide-gamut HEIC's or AVIF's colours by code points (an ``nclx`` colour box)
    instead of an ICC profile; the decoders give the P3 pixels as they are and drop the code points, and the
    untagged result was shown as sRGB, every saturated colour dulled. Display P3 (primaries 12, an SDR transfer)
    comes out with a P3 profile, in every format; sRGB's primaries and HDR transfers (PQ: 16) get none."""
    import pyvips

    from worker.evaluation import register_heif_writer

    register_heif_writer()
    buffer = io.BytesIO()
    gradient(size=(24, 16)).save(buffer, fmt, quality=90)  # no profile: an nclx colour box of sRGB (1, 13)
    data = buffer.getvalue()
    at = data.index(b"colrnclx") + 8
    source = tmp_path / f"in.{fmt.lower()}"
    source.write_bytes(data[:at] + primaries.to_bytes(2, "big") + transfer.to_bytes(2, "big") + data[at + 4:])
    p3 = pyvips.Image.black(1, 1, bands=3).copy(interpretation="srgb").icc_export(output_profile="p3").get(
        "icc-profile-data")  # libvips' own Display P3
    assert ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(p3))).startswith("sP3")
    for out_fmt in ("png", "jpeg", "webp", "avif", "tiff"):
        result = tmp_path / f"out.{out_fmt}"
        render(source, result, EngineRegistry(Settings()), "bicubic", SizeRequest(scale=2), out_fmt)
        with Image.open(result) as out:
            assert out.info.get("icc_profile") == (p3 if tagged else None), out_fmt


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF", "HEIF", "AVIF"])
@pytest.mark.parametrize("orientation", [1, 6, 8])
def test_the_size_the_api_reads_is_the_size_the_worker_decodes(tmp_path, fmt, orientation):
    """The API plans a job's output from the header (sniff), the worker from the decoded image: for a photo
    tagged to be shown turned, both must be the turned size, whatever each format's reader does itself (Pillow
    turns a TIFF while reading it; pi-heif resets a HEIC's tag)."""
    from shared.formats import sniff
    from worker.evaluation import register_heif_writer

    register_heif_writer()
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"photo.{fmt.lower()}"
    options = {"tiffinfo": {274: orientation}} if fmt == "TIFF" else {"exif": exif.tobytes()}
    pixels = np.full((30, 40, 3), 40, np.uint8)
    pixels[:10, :10] = 250  # a bright block at the top-left of the stored picture
    Image.fromarray(pixels).save(path, fmt, **options)
    sniffed = sniff(path.read_bytes(), 10**8)
    decoded = decode(path)
    assert (sniffed.width, sniffed.height) == (decoded.rgb.shape[1], decoded.rgb.shape[0])
    assert decoded.rgb.shape[:2] == ((30, 40) if orientation == 1 else (40, 30))
    corner = {1: (slice(0, 8), slice(0, 8)), 6: (slice(0, 8), slice(-8, None)),  # 6: turned clockwise
              8: (slice(-8, None), slice(0, 8))}[orientation]  # 8: turned counter-clockwise
    assert decoded.rgb[corner].mean() > 200, "the image was turned the wrong way"


def _insert_late_exif(path, orientation: int) -> None:
    """Move a PNG's orientation after its pixels: an eXIf chunk just before IEND (some writers put it there;
    Pillow and libvips put it before the pixels)."""
    import struct
    import zlib

    exif = Image.Exif()
    exif[0x0112] = orientation
    data = exif.tobytes()[6:]  # the TIFF structure, without the "Exif\0\0" of JPEG's segment
    chunk = struct.pack(">I", len(data)) + b"eXIf" + data + struct.pack(">I", zlib.crc32(b"eXIf" + data))
    raw = path.read_bytes()
    assert raw[-12:-8] == b"\x00\x00\x00\x00" and raw[-8:-4] == b"IEND"
    path.write_bytes(raw[:-12] + chunk + raw[-12:])


@pytest.mark.parametrize("where", ["late eXIf", "raw profile", "late eXIf, 16-bit"])
@pytest.mark.parametrize("orientation", [6, 8])
def test_a_png_turned_by_an_exif_the_api_cannot_see_at_once_is_sized_and_turned_alike(tmp_path, where, orientation):
    """Three readers decided orientation: the API's size check missed an eXIf after the pixels and ImageMagick's
    raw EXIF profile (the job failed late, internal_error), libvips' autorot missed both on 16-bit files."""
    from PIL import PngImagePlugin

    from shared.formats import sniff

    deep = "16-bit" in where
    pixels = np.full((30, 40, 3), 8000 if deep else 40, np.uint16 if deep else np.uint8)
    pixels[:10, :10] = 60000 if deep else 250
    path = tmp_path / "photo.png"
    if where == "raw profile":
        exif = Image.Exif()
        exif[0x0112] = orientation
        info = PngImagePlugin.PngInfo()
        data = exif.tobytes()
        info.add_text("Raw profile type exif", f"\nexif\n{len(data):8d}\n{data.hex()}\n")
        Image.fromarray(pixels).save(path, pnginfo=info)
    else:
        if deep:
            import pyvips

            pyvips.Image.new_from_memory(pixels.tobytes(), 40, 30, 3, "ushort").copy(
                interpretation="rgb16").pngsave(str(path), keep="none")  # no EXIF of libvips' own
        else:
            Image.fromarray(pixels).save(path)
        _insert_late_exif(path, orientation)
    sniffed = sniff(path.read_bytes(), 10**8)
    decoded = decode(path)
    assert (sniffed.width, sniffed.height) == (30, 40) == (decoded.rgb.shape[1], decoded.rgb.shape[0])
    assert decoded.rgb.dtype == (np.uint16 if deep else np.uint8)
    corner = (slice(0, 8), slice(-8, None)) if orientation == 6 else (slice(-8, None), slice(0, 8))
    assert decoded.rgb[corner].mean() > (50000 if deep else 200), "turned the wrong way"


@pytest.mark.parametrize("bands", [3, 1])
def test_a_sixteen_bit_pngs_colour_key_is_its_alpha(tmp_path, bands):
    """Pillow compared a 16-bit tRNS key with 8-bit pixels (a key only one pixel matched made half the image
    transparent) and dropped a 16-bit grey image's key."""
    import struct
    import zlib

    pyvips = pytest.importorskip("pyvips")
    pixels = np.full((30, 40, bands), 20000, np.uint16)
    pixels[:15] = 65535  # bright: its 8-bit value equals the 8-bit value of the dark key below
    pixels[20, 7] = 255  # the one pixel the key names (255 of 65535: nearly black)
    path = tmp_path / "keyed.png"
    pyvips.Image.new_from_memory(pixels.tobytes(), 40, 30, bands, "ushort").copy(
        interpretation="rgb16" if bands == 3 else "grey16").pngsave(str(path), keep="none")
    key = struct.pack(">HHH", 255, 255, 255) if bands == 3 else struct.pack(">H", 255)
    chunk = struct.pack(">I", len(key)) + b"tRNS" + key + struct.pack(">I", zlib.crc32(b"tRNS" + key))
    raw = path.read_bytes()
    path.write_bytes(raw[:33] + chunk + raw[33:])  # after IHDR
    decoded = decode(path)
    alpha = np.asarray(decoded.alpha)
    assert decoded.alpha is not None and alpha.shape == (30, 40)
    assert (alpha == 0).sum() == 1 and alpha[20, 7] == 0
    assert decoded.greyscale == (bands == 1)


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_xmp_stored_the_imagemagick_way_in_a_png_is_carried(tmp_path, fmt):
    """ImageMagick keeps a PNG's XMP in a "Raw profile type xmp" text chunk (hex): EXIF stored that way was kept,
    XMP was dropped."""
    from PIL import PngImagePlugin

    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:rights>(c) Studio</dc:rights></x:xmpmeta>'
    info = PngImagePlugin.PngInfo()
    info.add_text("Raw profile type xmp", f"\nxmp\n{len(xmp):8d}\n{xmp.hex()}\n")
    source = save(tmp_path, gradient(size=(30, 20)), pnginfo=info)
    result = tmp_path / f"out.{fmt}"
    render(source, result, EngineRegistry(Settings()), "bicubic", SizeRequest(scale=2), fmt)
    with Image.open(result) as out:
        carried = out.info.get("xmp") or out.info.get("XML:com.adobe.xmp")
    assert carried and b"(c) Studio" in (carried if isinstance(carried, bytes) else carried.encode())


@pytest.mark.parametrize(("gamma", "shown"), [(55556, 145), (45455, 128)])
def test_a_pngs_stated_gamma_is_shown_the_same_in_a_result_that_states_none(tmp_path, gamma, shown):
    """An old Mac PNG states gamma 1.8 in a gAMA chunk (no profile): the result carries no gAMA, so it was read
    as sRGB, and mid-grey came out darker than the input showed. Its pixels are re-encoded for 2.2; a gAMA of
    sRGB's own 1/2.2 changes nothing."""
    import struct
    import zlib

    path = save(tmp_path, Image.new("RGB", (16, 12), (128, 128, 128)))
    data = struct.pack(">I", gamma)
    chunk = struct.pack(">I", 4) + b"gAMA" + data + struct.pack(">I", zlib.crc32(b"gAMA" + data))
    raw = path.read_bytes()
    path.write_bytes(raw[:33] + chunk + raw[33:])  # after IHDR
    with Image.open(path) as opened:
        assert opened.info["gamma"] == gamma / 100000
    assert tuple(decode(path).rgb[5, 5]) == (shown,) * 3  # 128 at gamma 1.8 shows as 145 does at 2.2


def test_a_damaged_raw_exif_profile_turns_nothing_and_fails_nothing(tmp_path):
    """ImageMagick's raw profile with broken hex: the API accepts the file as stored, so the worker must decode it
    (it failed the job as unreadable)."""
    from PIL import PngImagePlugin

    from shared.formats import sniff

    info = PngImagePlugin.PngInfo()
    info.add_text("Raw profile type exif", "\nexif\n       8\nzz12\n")
    path = save(tmp_path, gradient(size=(40, 30)), pnginfo=info)
    assert (sniff(path.read_bytes(), 10**8).width, decode(path).rgb.shape) == (40, (30, 40, 3))


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
@pytest.mark.parametrize("orientation", [6, 8])
def test_a_sixteen_bit_photo_is_turned_the_way_the_eight_bit_path_turns_it(tmp_path, fmt, orientation):
    """16-bit PNGs and TIFFs are read again at full depth by libvips (its own autorot), not by exif_transpose."""
    import pyvips

    pixels = np.full((30, 40, 3), 8000, np.uint16)
    pixels[:10, :10] = 60000
    path = tmp_path / f"deep.{fmt.lower()}"
    image = pyvips.Image.new_from_memory(pixels.tobytes(), 40, 30, 3, "ushort").copy(interpretation="rgb16")
    image = image.copy()
    image.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    image.write_to_file(str(path))
    decoded = decode(path)
    assert decoded.rgb.dtype == np.uint16 and decoded.rgb.shape[:2] == (40, 30)
    corner = (slice(0, 8), slice(-8, None)) if orientation == 6 else (slice(-8, None), slice(0, 8))
    assert decoded.rgb[corner].mean() > 50000, "the 16-bit image was turned the wrong way"


@pytest.mark.parametrize("fmt", ["tiff", "png", "jpeg"])
def test_a_tiff_or_a_jpeg_saying_a_size_in_its_exif_gives_a_result_of_its_own_size(tmp_path, fmt):
    """A TIFF's EXIF is its own directory: its width, strips and compression were carried into the result, and a
    TIFF result said the input's width (400x320 read as 100x320 of scrambled rows). Some cameras write the
    same tags into a JPEG's EXIF."""
    tiff = save(tmp_path, gradient(size=(50, 40)), "TIFF", dpi=(300, 300))
    exif = Image.Exif()
    exif[0x0100], exif[0x0101], exif[0x8298] = 50, 40, "(c) Studio"  # ImageWidth, ImageLength, Copyright
    jpeg = save(tmp_path, gradient(size=(50, 40)), "JPEG", exif=exif, quality=95)
    for source in (tiff, jpeg):
        result = tmp_path / f"out.{fmt}"
        render(source, result, EngineRegistry(Settings()), "bicubic", SizeRequest(scale=2), fmt)
        with Image.open(result) as out:
            assert out.size == (100, 80), source
            out.load()  # every row there: a wrong strip layout fails here
            kept = out.getexif()
            assert not {256, 257, 273, 279} & set(kept) or fmt == "tiff", dict(kept)
            assert kept.get(0x8298, "(c) Studio") == "(c) Studio"


@pytest.mark.parametrize("fmt", ["jpeg", "png", "tiff"])
def test_photoshops_layers_and_resources_in_a_tiff_stay_behind(tmp_path, fmt):
    """A layered TIFF saved by Photoshop carries its layers (tag 37724) and image resources (34377: its own
    resolution and the input's thumbnail) in IFD0: they were copied into every result, and past 64 kB a JPEG's
    EXIF was dropped whole, copyright and camera with it. The picture's own tags stay."""
    from PIL import TiffImagePlugin

    info = TiffImagePlugin.ImageFileDirectory_v2()
    info[0x010F], info[0x8298] = "Canon", "(c) Studio"  # Make, Copyright
    info[37724] = os.urandom(300_000)  # ImageSourceData: the layers
    info.tagtype[37724] = 7  # UNDEFINED
    info[34377] = b"8BIM\x03\xed" + bytes(40)  # Photoshop image resources
    info.tagtype[34377] = 1  # BYTE
    source = save(tmp_path, gradient(size=(50, 40)), "TIFF", tiffinfo=info)
    result = tmp_path / f"out.{fmt}"
    render(source, result, EngineRegistry(Settings()), "bicubic", SizeRequest(scale=2), fmt)
    with Image.open(result) as out:
        kept = out.getexif()
        assert (kept.get(0x010F), kept.get(0x8298)) == ("Canon", "(c) Studio")
        assert not {37724, 34377} & set(kept) and not {37724, 34377} & set(getattr(out, "tag_v2", {}))


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "avif", "tiff"])
def test_a_geotiffs_place_on_the_earth_stays_behind(tmp_path, fmt):
    """A drone's orthophoto or an aerial scan is a GeoTIFF: its tags say where on the Earth its pixels lie (and at
    the input's pixel size). Like the GPS directory, no result carries them; they went into every result made in
    memory. The picture's own tags stay."""
    from PIL import TiffImagePlugin

    geo = {33550: (0.5, 0.5, 0.0), 33922: (0.0, 0.0, 0.0, 13.4, 52.5, 0.0),  # ModelPixelScale, ModelTiepoint
           34264: tuple(float(i) for i in range(16)), 34735: (1, 1, 0, 1, 1024, 0, 1, 2),  # ModelTransformation,
           34736: (6378137.0,), 34737: "WGS 84|"}  # GeoKeyDirectory, GeoDoubleParams, GeoAsciiParams
    info = TiffImagePlugin.ImageFileDirectory_v2()
    info[0x8298] = "(c) Studio"
    for tag, value in geo.items():
        info[tag] = value
    source = save(tmp_path, gradient(size=(50, 40)), "TIFF", tiffinfo=info)
    with Image.open(source) as written:
        assert set(geo) <= set(written.tag_v2)  # the input does carry them
    result = tmp_path / f"out.{fmt}"
    render(source, result, EngineRegistry(Settings()), "bicubic", SizeRequest(scale=2), fmt)
    with Image.open(result) as out:
        kept = out.getexif()
        assert kept.get(0x8298) == "(c) Studio"
        assert not set(geo) & set(kept) and not set(geo) & set(getattr(out, "tag_v2", {})), dict(kept)


@pytest.mark.parametrize(("fmt", "options", "expected"), [
    ("TIFF", {}, 72),  # no resolution tags (Pillow says 1 dpi)
    ("TIFF", {"dpi": (150, 150)}, 300),
    ("JPEG", {"exif": Image.Exif()}, 72),  # JFIF without units, EXIF without resolution (Pillow says 72)
    ("JPEG", {"dpi": (200, 200)}, 400),
    ("MPO", {"dpi": (200, 200)}, 400),  # how Pillow reads many cameras' JPEGs
    ("BMP", {"dpi": (150, 150)}, 300),
    ("PNG", {}, 72),
    ("PNG", {"exif": "resolution"}, 600),  # no pHYs, a resolution in its eXIf
])
def test_only_a_resolution_the_file_states_is_scaled_into_the_result(tmp_path, fmt, options, expected):
    """A TIFF stating no resolution came out at 2 dpi at x2 (Pillow's 1 scaled); a JPEG with an EXIF but no
    resolution at 144 (Pillow's 72 scaled) while the same picture without EXIF said 72: a file stating none
    gets the 72 readers assume, whatever the scale."""
    if options.get("exif") == "resolution":
        options["exif"] = Image.Exif()
        options["exif"][0x011A], options["exif"][0x011B], options["exif"][0x0128] = 300.0, 300.0, 2
    elif "exif" in options:
        options["exif"][0x0110] = "Camera X100"
    source = save(tmp_path, gradient(), fmt, **options)
    result = tmp_path / "out.png"
    render(source, result, EngineRegistry(Settings()), "bicubic", SizeRequest(scale=2), "png")
    with Image.open(result) as out:
        assert tuple(round(v) for v in out.info["dpi"]) == (expected, expected)


@pytest.mark.parametrize("fmt", ["png", "tiff"])
def test_a_file_named_in_latin_1_is_read_not_called_corrupt(tmp_path, fmt):
    """A Linux file name is bytes: ``caf\\xe9`` named on a Latin-1 system is no UTF-8, which libvips wants of a name
    (pyvips encodes it strictly); a valid 8- or 16-bit PNG or TIFF was said to be "corrupt or truncated"."""
    folder = tmp_path / os.fsdecode(b"caf\xe9")
    folder.mkdir()
    deep, pixels = _deep_photo(tmp_path, 3, "tif" if fmt == "tiff" else "png")
    latin = folder / os.fsdecode(b"caf\xe9." + fmt.encode())
    deep.rename(latin)
    decoded = decode(latin)
    assert decoded.deep and np.array_equal(decoded.rgb, pixels)  # read at full depth by libvips
    flat = save(tmp_path, gradient(), "PNG")
    eight = folder / os.fsdecode(b"\xe9t\xe9.png")
    flat.rename(eight)
    assert decode(eight).rgb.shape == (10, 20, 3)
