"""model=auto: what an input file says about itself, and which network it is sent to."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from shared.catalog import AUTO, catalog_for
from shared.settings import Settings
from shared.sizing import SizeRequest
from worker.engine.registry import EngineRegistry
from worker.engine.selection import select
from worker.input_profile import InputProfile, estimate_jpeg_quality, profile_input
from worker.noise import estimate_noise
from worker.render import render


def _photo(size=(160, 120), seed=0):
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], -1)
    return np.clip(smooth + np.random.default_rng(seed).normal(0, 0.5, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("quality", [20, 30, 50, 62, 75, 85, 90, 95, 100])
@pytest.mark.parametrize("subsampling", [0, 2])
def test_jpeg_quality_is_read_back_from_files_pillow_writes(tmp_path, quality, subsampling):
    path = tmp_path / "q.jpg"
    Image.fromarray(_photo()).save(path, "JPEG", quality=quality, subsampling=subsampling)
    with Image.open(path) as image:
        assert estimate_jpeg_quality(image.quantization) == quality


def test_noise_is_measured_on_flat_regions():
    clean = _photo()
    noisy = np.clip(clean + np.random.default_rng(1).normal(0, 12, clean.shape), 0, 255).astype(np.uint8)
    assert estimate_noise(clean).luma < 2 and estimate_noise(clean).colour < 1
    measured = estimate_noise(noisy)
    assert 6 < measured.luma < 12  # colour noise of sigma 12 shows as ~8 in luma
    assert 10 < measured.colour < 14  # and as itself in the colour differences


def test_colour_noise_is_told_from_texture_and_grey_noise_is_not_taken_for_colour(tmp_path):
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:120, 0:160]
    stripes = 128 + 120 * np.sin(xx * 1.3) * np.cos(yy * 0.9)  # fine achromatic texture, no noise at all
    texture = np.repeat(stripes[..., None], 3, axis=2).clip(0, 255).astype(np.uint8)
    textured = estimate_noise(texture)
    assert textured.luma > 6 and textured.colour < 1  # luma takes texture for noise; colour does not
    colour_noise = np.clip(_photo() + rng.normal(0, 5, (120, 160, 3)), 0, 255).astype(np.uint8)
    grey_noise = np.clip(_photo() + rng.normal(0, 10, (120, 160, 1)), 0, 255).astype(np.uint8)
    assert estimate_noise(colour_noise).colour > 3.5 and estimate_noise(grey_noise).colour < 1
    quiet = _profile(tmp_path, "PNG", colour_noise)
    assert quiet.noisy and quiet.measured_noise[0] == "colour noise" and 0.15 < quiet.strength < 0.4


def _textured_photo(size=(240, 200), seed=5):
    """A clean LR 'photo' of texture everywhere (no flat region): a field with natural images' 1/f amplitude
    spectrum, made at twice the size and bicubic-downscaled as an LR is. One scale's Laplacian reads it as noise
    of sigma 6 or more."""
    from worker.quality import bicubic_downscale

    w, h = size
    fy, fx = np.meshgrid(np.fft.fftfreq(2 * h), np.fft.rfftfreq(2 * w), indexing="ij")
    frequency = np.hypot(fy, fx)
    frequency[0, 0] = 1.0
    white = np.random.default_rng(seed).normal(0, 1, (2 * h, 2 * w))
    field = np.fft.irfft2(np.fft.rfft2(white) / frequency, s=(2 * h, 2 * w))
    hr = np.clip(128 + 40 * field / field.std(), 0, 255)
    return bicubic_downscale(np.repeat(hr[..., None], 3, axis=2).astype(np.uint8), 2)


@pytest.mark.parametrize("sigma", [4, 6])
def test_grey_noise_under_the_luma_floor_is_found_and_texture_is_not_taken_for_it(tmp_path, sigma):
    textured = _textured_photo()
    reading = estimate_noise(textured)
    assert reading.luma > 6 and reading.white_luma < 1.0  # one scale takes the texture for noise, two do not
    clean = _profile(tmp_path, "PNG", textured)
    assert not clean.noisy
    grain = np.random.default_rng(sigma).normal(0, sigma, (*textured.shape[:2], 1))
    noisy_photo = np.clip(_photo((240, 200)) + grain, 0, 255).astype(np.uint8)
    measured = estimate_noise(noisy_photo)
    assert measured.luma < 8 and measured.colour < 1  # under both earlier floors: grey noise went unseen
    assert 0.6 * sigma < measured.white_luma < 1.1 * sigma
    profile = _profile(tmp_path, "PNG", noisy_photo)
    assert profile.measured_noise[0] == "noise" and abs(profile.strength - sigma / 20) < 0.05
    assert profile.to_dict()["white_noise_sigma"] == round(measured.white_luma, 2)
    catalog = catalog_for(Settings())
    assert select(AUTO, None, profile, catalog).model == "residual_sr_cond"
    assert select(AUTO, None, clean, catalog).model == "residual_sr"


def test_a_jpegs_noise_under_its_luma_floor_is_found_at_two_scales(tmp_path, catalog):
    photo = _photo((240, 200))
    grain = np.random.default_rng(6).normal(0, 6, (200, 240, 1))

    def decoded_profile(image: np.ndarray) -> InputProfile:
        path = tmp_path / "in.jpg"
        Image.fromarray(image).save(path, "JPEG", quality=90)
        with Image.open(path) as file:
            return profile_input(path, np.asarray(file.convert("RGB")))

    noisy = decoded_profile(np.clip(photo + grain, 0, 255).astype(np.uint8))
    assert noisy.noise_sigma < 6 and noisy.white_noise_sigma >= 2.5  # under the JPEG luma floor; white reads it
    assert noisy.measured_noise is not None and noisy.strength > noisy.quality_strength
    assert "noise sigma" in select(AUTO, None, noisy, catalog).reason
    clean = decoded_profile(photo)
    assert clean.measured_noise is None and clean.strength == round(clean.quality_strength, 3)


def test_the_two_scale_reading_needs_enough_readable_blocks(tmp_path):
    grain = np.random.default_rng(7).normal(0, 6, (120, 160, 1))  # 7 x 9 blocks: too few to tell texture
    small = np.clip(_photo() + grain, 0, 255).astype(np.uint8)
    assert estimate_noise(small).luma > 4 and estimate_noise(small).white_luma is None
    assert _profile(tmp_path, "PNG", small).to_dict()["white_noise_sigma"] is None
    blown_out = np.clip(250 + np.random.default_rng(8).normal(0, 6, (240, 320, 3)), 0, 255).astype(np.uint8)
    assert estimate_noise(blown_out).white_luma is None  # every block clipped: nothing left to read


def test_blocks_clipped_to_white_do_not_hide_the_noise():
    rng = np.random.default_rng(4)
    image = _photo().astype(float)
    image[:90] = 255  # three quarters of the picture is blown-out sky: noise there is clipped away
    noisy = np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8)
    assert estimate_noise(noisy).colour > 7


def _profile(tmp_path, fmt, image=None, **options):
    image = _photo() if image is None else image
    path = tmp_path / f"in.{fmt.lower()}"
    Image.fromarray(image).save(path, fmt, **options)
    return profile_input(path, image)


def test_profiles_of_lossless_and_lossy_files(tmp_path):
    png = _profile(tmp_path, "PNG")
    assert (png.lossy, png.jpeg_quality, png.strength, png.damaged) == (False, None, 0.0, False)
    jpeg = _profile(tmp_path, "JPEG", quality=60)
    assert (jpeg.lossy, jpeg.jpeg_quality, jpeg.damaged) == (True, 60, True) and 0.4 < jpeg.strength < 0.7
    webp_lossless = _profile(tmp_path, "WEBP", lossless=True)
    webp_lossy = _profile(tmp_path, "WEBP", quality=70)
    assert (webp_lossless.lossy, webp_lossy.lossy) == (False, True)
    noisy = np.clip(_photo() + np.random.default_rng(2).normal(0, 15, (120, 160, 3)), 0, 255).astype(np.uint8)
    assert _profile(tmp_path, "PNG", noisy).damaged


@pytest.fixture(scope="module")
def catalog():
    return catalog_for(Settings())


@pytest.mark.parametrize("quality,near_lossless", [(95, False), (96, False), (97, True), (98, True), (100, True)])
def test_a_near_lossless_jpeg_goes_to_the_fidelity_network_unless_it_is_noisy(tmp_path, catalog, quality,
                                                                                near_lossless):
    def decoded_profile(image: np.ndarray) -> InputProfile:  # measured on the file's pixels, as a job does
        path = tmp_path / "in.jpg"
        Image.fromarray(image).save(path, "JPEG", quality=quality)
        with Image.open(path) as file:
            return profile_input(path, np.asarray(file.convert("RGB")))

    photo = _photo((240, 200))
    clean = decoded_profile(photo)
    assert (clean.jpeg_quality, clean.near_lossless, clean.damaged) == (quality, near_lossless, not near_lossless)
    chosen = select(AUTO, None, clean, catalog)
    assert chosen.model == ("residual_sr" if near_lossless else "residual_sr_cond")
    assert ("near-lossless" in chosen.reason) == near_lossless
    grain = np.random.default_rng(quality).normal(0, 6, (*photo.shape[:2], 1))
    noisy = decoded_profile(np.clip(photo + grain, 0, 255).astype(np.uint8))
    noisy_choice = select(AUTO, None, noisy, catalog)
    assert noisy.damaged and noisy_choice.model == "residual_sr_cond"
    assert "sigma" in noisy_choice.reason or not near_lossless  # a near-lossless file is robust only for its noise
    colour = np.random.default_rng(quality).normal(0, 12, (120, 160, 3))  # too small for the two-scale reading
    small = decoded_profile(np.clip(_photo() + colour, 0, 255).astype(np.uint8))
    assert small.white_noise_sigma is None and small.damaged  # the 4:2:0 file hides its colour noise; luma shows


def test_auto_sends_jpegs_to_the_robust_network_and_pngs_to_the_fidelity_one(catalog):
    routes = catalog[AUTO].routes
    jpeg = InputProfile("JPEG", True, 50, 3.0)
    png = InputProfile("PNG", False, None, 0.8)
    assert select(AUTO, None, jpeg, catalog).model == routes["robust"]
    assert select(AUTO, None, jpeg, catalog).strength == jpeg.strength > 0
    assert select(AUTO, None, png, catalog).model == routes["fidelity"]
    assert select(AUTO, None, png, catalog).strength is None


def test_the_robust_network_named_for_a_clean_file_says_why_its_strength_is_zero(tmp_path, catalog):
    """Its reason once named a noise sigma under every floor, as if that had set the strength."""
    clean = _profile(tmp_path, "PNG", _photo())
    chosen = select("residual_sr_cond", None, clean, catalog)
    assert chosen.strength == 0 and chosen.reason == "asked for by name; lossless PNG, no noise measured"


def test_denoise_overrides_the_measured_strength(catalog):
    routes = catalog[AUTO].routes
    png = InputProfile("PNG", False, None, 0.8)
    jpeg = InputProfile("JPEG", True, 40, 3.0)
    assert (select(AUTO, 0.3, png, catalog).model, select(AUTO, 0.3, png, catalog).strength) == (routes["robust"], 0.3)
    assert select(AUTO, 0.0, jpeg, catalog).model == routes["fidelity"]
    named = select(routes["robust"], None, jpeg, catalog)
    assert named.model == routes["robust"] and named.strength == jpeg.strength
    assert select("bicubic", 0.5, jpeg, catalog).strength is None


def test_render_records_what_ran(tmp_path, catalog):
    engines = EngineRegistry(Settings())
    buffer = io.BytesIO()
    Image.fromarray(_photo((64, 48))).save(buffer, "JPEG", quality=70)
    source = tmp_path / "in.jpg"
    source.write_bytes(buffer.getvalue())
    rendered = render(source, tmp_path / "out.png", engines, AUTO, SizeRequest(scale=2), "png")
    assert rendered.selection.model == catalog[AUTO].routes["robust"]
    assert rendered.selection.to_dict()["input"]["jpeg_quality"] == 70
    with Image.open(tmp_path / "out.png") as out:
        assert out.size == (128, 96)


@pytest.mark.parametrize("transparent_share", [0.2, 0.4])
def test_a_noisy_cut_out_photo_is_read_as_noisy_through_its_transparent_background(tmp_path, catalog,
                                                                                    transparent_share):
    """A product photo on a transparent background: the flat pixels behind the alpha were read as the image's
    flattest blocks, so noise of sigma 10 measured 0 and the file went to the fidelity network."""
    rgb = np.clip(_photo((240, 180)) + np.random.default_rng(7).normal(0, 10, (180, 240, 3)), 0, 255)
    alpha = np.full((180, 240), 255, np.uint8)
    cut = int(240 * transparent_share)
    alpha[:, :cut] = 0
    rgb[:, :cut] = 255  # what an editor leaves behind a cleared background
    source = tmp_path / "cutout.png"
    Image.fromarray(np.dstack([rgb.astype(np.uint8), alpha]), "RGBA").save(source)
    rendered = render(source, tmp_path / "out.png", EngineRegistry(Settings()), AUTO, SizeRequest(scale=2), "png")
    assert rendered.selection.model == catalog[AUTO].routes["robust"], rendered.selection.reason
    assert rendered.selection.to_dict()["input"]["colour_noise_sigma"] > 7
    with Image.open(tmp_path / "out.png") as out:
        assert out.mode == "RGBA" and out.getchannel("A").getpixel((10, 10)) == 0  # the background stays clear


def _edge_phase(luma: np.ndarray, axis: int) -> int:
    """Where the strongest 8-periodic discontinuities are along ``axis``: the block edges of a blocky JPEG."""
    jumps = np.abs(np.diff(luma.astype(float), axis=axis)).mean(axis=1 - axis)  # jump between i and i + 1
    return int(np.argmax([jumps[p::8].mean() for p in range(8)])) + 1  # the edge lies before pixel p + 1


@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_jpeg_grid_is_found_in_the_upright_pixels(tmp_path, orientation):
    from worker.imaging import decode

    rng = np.random.default_rng(orientation)
    raw = np.clip(_photo((83, 61)).astype(int) + rng.normal(0, 25, (61, 83, 1)), 0, 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "o.jpg"
    Image.fromarray(raw).save(path, "JPEG", quality=10, exif=exif.tobytes())
    upright = decode(path).rgb
    grid = profile_input(path, upright).jpeg_grid
    luma = upright @ np.array([0.299, 0.587, 0.114])
    # a block starts where the position in the block is 0: pixel i with (grid + i) % 8 == 0
    assert _edge_phase(luma, 0) % 8 == (-grid[0]) % 8 and _edge_phase(luma, 1) % 8 == (-grid[1]) % 8
    if orientation == 1:
        assert grid == (0, 0)


def test_only_jpegs_have_a_grid_and_what_ran_tells_the_band_workers(tmp_path):
    from worker.engine.base import Condition
    from worker.engine.selection import Selection, ran_condition

    assert _profile(tmp_path, "PNG").jpeg_grid is None and _profile(tmp_path, "WEBP", quality=60).jpeg_grid is None
    jpeg = _profile(tmp_path, "JPEG", quality=60)
    selection = Selection("residual_sr_cond", jpeg.strength, "JPEG quality 60", jpeg)
    assert selection.condition == Condition(jpeg.strength, (0, 0))
    assert ran_condition(json.loads(json.dumps(selection.to_dict()))) == selection.condition


@pytest.mark.parametrize("background", [255, 0])
def test_text_on_white_or_black_is_clean_not_noisy(tmp_path, background):
    from PIL import ImageDraw

    image = Image.new("RGB", (800, 600), (background,) * 3)
    draw = ImageDraw.Draw(image)
    for row in range(0, 600, 40):
        colour = (200, 30, 60) if row % 80 else (20, 90, 200)
        draw.text((10, row), "Invoice 2026-11 total 1,234.56 EUR " * 3, fill=colour)
    profile = _profile(tmp_path, "PNG", np.asarray(image))
    assert not profile.noisy and profile.strength == 0.0


def _text_page(paper: int, ink: int, size=(640, 400)) -> np.ndarray:
    """A page of dense text as a scan's LR holds it: 12 px letters on 16 px lines, so nearly every 16x16 block is
    ink and paper."""
    from PIL import ImageDraw, ImageFont

    image = Image.new("RGB", size, (paper,) * 3)
    draw, font = ImageDraw.Draw(image), ImageFont.load_default(size=12)
    words = ["invoice", "total", "amount", "due", "payment", "terms", "delivery", "address", "order", "price"]
    rng = np.random.default_rng(0)
    for row in range(2, size[1] - 16, 16):
        draw.text((4, row), " ".join(rng.choice(words, 40)), fill=(ink,) * 3, font=font)
    return np.asarray(image)


@pytest.mark.parametrize("paper,ink", [(255, 0), (238, 30)])
def test_a_page_of_dense_text_is_clean_and_noise_on_its_paper_is_found(tmp_path, catalog, paper, ink):
    page = _text_page(paper, ink)
    assert estimate_noise(page).luma > 8  # the strokes' edges fill even the flattest blocks' mean |Laplacian|
    clean = _profile(tmp_path, "PNG", page)
    assert clean.noise_sigma < 1 and not clean.noisy  # read on the paper between the strokes
    assert select(AUTO, None, clean, catalog).model == catalog[AUTO].routes["fidelity"]
    grain = np.random.default_rng(3).normal(0, 12, (*page.shape[:2], 1))
    noisy = _profile(tmp_path, "PNG", np.clip(np.round(page + grain), 0, 255).astype(np.uint8))
    assert noisy.noisy and select(AUTO, None, noisy, catalog).model == catalog[AUTO].routes["robust"]


def test_noise_reads_alike_on_the_paper_and_by_the_mean_and_lossy_files_keep_the_mean():
    grain = np.clip(128 + np.random.default_rng(4).normal(0, 8, (200, 240, 1)), 0, 255).astype(np.uint8).repeat(3, 2)
    mean, paper = estimate_noise(grain), estimate_noise(grain, lossless=True)
    assert 7 < mean.luma < 9 and paper.luma == mean.luma  # white noise: the paper reading does not replace it
    page = _text_page(255, 0)
    assert estimate_noise(page, lossless=True).luma < 1 < 8 < estimate_noise(page).luma


def _decoded_jpeg_profile(tmp_path, image: np.ndarray, quality: int) -> InputProfile:
    """The profile of ``image`` saved as a JPEG, measured on the decoded file as a job does."""
    path = tmp_path / "in.jpg"
    Image.fromarray(image).save(path, "JPEG", quality=quality)
    with Image.open(path) as file:
        return profile_input(path, np.asarray(file.convert("RGB")))


@pytest.mark.parametrize("paper,ink", [(255, 0), (238, 30)])
def test_a_jpeg_of_a_page_of_text_takes_its_qualitys_strength_not_its_strokes(tmp_path, catalog, paper, ink):
    from worker.engine.strength import jpeg_strength

    page = _decoded_jpeg_profile(tmp_path, _text_page(paper, ink), 90)
    assert page.noise_sigma >= 6 and page.strokes  # the strokes' edges read as noise, and more at half resolution
    assert not page.noisy and page.strength == round(jpeg_strength(90), 3)
    chosen = select(AUTO, None, page, catalog)
    assert chosen.model == catalog[AUTO].routes["robust"] and chosen.reason == "JPEG quality 90"


@pytest.mark.parametrize("paper,ink", [(255, 0), (30, 238)])  # dark on light, light on dark
def test_a_fine_jpeg_of_a_page_of_text_goes_to_the_fidelity_network(tmp_path, catalog, paper, ink):
    from worker.engine.selection import TEXT_FIDELITY_QUALITY

    page, robust, fidelity = _text_page(paper, ink), catalog[AUTO].routes["robust"], catalog[AUTO].routes["fidelity"]
    fine = _decoded_jpeg_profile(tmp_path, page, TEXT_FIDELITY_QUALITY)
    assert fine.strokes and not fine.noisy and fine.compressed
    chosen = select(AUTO, None, fine, catalog)
    assert chosen.model == fidelity and chosen.strength is None
    assert chosen.reason == f"JPEG quality {TEXT_FIDELITY_QUALITY}, text/line art: strokes, not noise"
    assert select("residual_sr_cond", None, fine, catalog).strength == fine.strength  # asked by name: unchanged
    for quality in (TEXT_FIDELITY_QUALITY - 1, 90, 75):  # coarser: the robust network at the quality's strength
        coarser = _decoded_jpeg_profile(tmp_path, page, quality)
        assert coarser.strokes and select(AUTO, None, coarser, catalog).model == robust
        assert select(AUTO, None, coarser, catalog).reason == f"JPEG quality {quality}"


def test_a_photo_at_a_text_pages_quality_keeps_the_robust_network(tmp_path, catalog):
    from worker.engine.selection import TEXT_FIDELITY_QUALITY

    colour_noise = np.random.default_rng(9).normal(0, 10, (200, 240, 3))
    for photo in (_photo((240, 200)), _textured_photo()):
        noisy = _decoded_jpeg_profile(tmp_path, np.clip(np.round(photo + colour_noise), 0, 255).astype(np.uint8),
                                      TEXT_FIDELITY_QUALITY)
        assert not noisy.strokes and noisy.noisy  # noise, not strokes: its noise's strength
        chosen = select(AUTO, None, noisy, catalog)
        assert chosen.model == catalog[AUTO].routes["robust"] and chosen.strength == noisy.strength
    clean = _decoded_jpeg_profile(tmp_path, _textured_photo(), TEXT_FIDELITY_QUALITY)
    assert not clean.strokes and select(AUTO, None, clean, catalog).model == catalog[AUTO].routes["robust"]


def test_a_noisy_photo_saved_as_jpeg_keeps_its_noise_strength(tmp_path):
    from worker.engine.strength import jpeg_strength, noise_strength

    colour_noise = np.random.default_rng(9).normal(0, 10, (200, 240, 3))
    for photo in (_photo((240, 200)), _textured_photo()):
        noisy = _decoded_jpeg_profile(tmp_path, np.clip(np.round(photo + colour_noise), 0, 255).astype(np.uint8), 90)
        assert not noisy.strokes and noisy.stroke_ratio < 1.5  # white noise halves at half resolution
        assert noisy.noisy and noisy.strength == round(noise_strength(noisy.noise_sigma), 3) > jpeg_strength(90)


def test_a_noisy_jpeg_takes_its_noise_strength_when_larger_than_its_quality_one(tmp_path, catalog):
    from worker.engine.strength import jpeg_strength, noise_strength

    grey_noise = np.clip(_photo() + np.random.default_rng(5).normal(0, 12, (120, 160, 1)), 0, 255).astype(np.uint8)
    profiles = {}
    for name, image in (("clean", _photo()), ("noisy", grey_noise)):
        path = tmp_path / f"{name}.jpg"
        Image.fromarray(image).save(path, "JPEG", quality=90)
        with Image.open(path) as saved:  # profiled as the worker does: on the decoded file
            profiles[name] = profile_input(path, np.asarray(saved.convert("RGB")))
    clean, noisy = profiles["clean"], profiles["noisy"]
    assert not clean.noisy and clean.strength == round(jpeg_strength(90), 3)
    assert noisy.noisy and noisy.noise_sigma > 8
    assert noisy.strength == round(noise_strength(noisy.noise_sigma), 3) > jpeg_strength(90) + 0.2
    chosen = select(AUTO, None, noisy, catalog)
    assert chosen.model == catalog[AUTO].routes["robust"] and chosen.strength == noisy.strength
    assert "quality 90" in chosen.reason and "noise sigma" in chosen.reason
    heavy = InputProfile("JPEG", True, 50, noisy.noise_sigma)  # the same noise under a heavier compression
    assert heavy.noisy and heavy.strength == round(jpeg_strength(50), 3)  # the quality's is the larger
    assert select(AUTO, None, heavy, catalog).reason == "JPEG quality 50"  # so the reason names it alone


def _header_quantizer(fmt: str, path) -> float | None:
    """What the format's own header reader says, to compare the profile with."""
    from worker.avif_header import avif_base_q_idx
    from worker.heif_header import heif_slice_qp
    from worker.webp_header import read_webp_compression

    return {"WEBP": lambda p: read_webp_compression(p).luma_quantizer, "AVIF": avif_base_q_idx,
            "HEIF": heif_slice_qp}[fmt](path)


@pytest.mark.parametrize("fmt,quality,route,scale_top", [
    ("WEBP", 30, "robust", 127), ("WEBP", 75, "robust", 127), ("WEBP", 90, "robust", 127),
    ("WEBP", 100, "fidelity", 127),
    ("AVIF", 20, "robust", 255), ("AVIF", 50, "robust", 255), ("AVIF", 90, "fidelity", 255),
    ("AVIF", 100, "fidelity", 255),
    ("HEIF", 20, "robust", 51), ("HEIF", 60, "robust", 51), ("HEIF", 90, "robust", 51),  # no near-lossless QP
])
def test_a_lossy_webp_avif_or_heic_is_routed_by_the_quantizer_in_its_header(tmp_path, catalog, fmt, quality, route,
                                                                           scale_top):
    from worker.engine.strength import quantizer_strength
    from worker.evaluation import register_heif_writer
    from worker.input_profile import NEAR_LOSSLESS_QUANTIZER

    register_heif_writer()  # pillow-heif (the dev extra) writes HEIC files
    path = tmp_path / f"in.{fmt.lower()}"
    Image.fromarray(_photo((240, 200))).save(path, fmt, quality=quality)
    with Image.open(path) as file:
        profile = profile_input(path, np.asarray(file.convert("RGB")))
    quantizer = _header_quantizer(fmt, path)
    assert (profile.format, profile.lossy, profile.jpeg_quality, profile.jpeg_grid) == (fmt, True, None, None)
    assert profile.quantizer == quantizer is not None
    assert profile.to_dict()["quantizer"] == round(quantizer, 1)
    chosen = select(AUTO, None, profile, catalog)
    assert chosen.model == catalog[AUTO].routes[route]
    if route == "robust":
        assert quantizer > NEAR_LOSSLESS_QUANTIZER[fmt] and not profile.near_lossless
        assert chosen.strength == round(quantizer_strength(fmt, quantizer), 3)
        assert f"quantizer {quantizer:.1f} of {scale_top}" in chosen.reason
    else:
        assert quantizer <= NEAR_LOSSLESS_QUANTIZER[fmt] and "near-lossless" in chosen.reason


def test_quantizer_scales_and_unread_headers_fall_back_to_the_encoders_default():
    from worker.engine.strength import AVIF_HEAVY_INDEX, WEBP_HEAVY_QUANTIZER, quantizer_strength
    from worker.input_profile import ASSUMED_STRENGTH

    assert [quantizer_strength("WEBP", q) for q in (0, WEBP_HEAVY_QUANTIZER / 2, WEBP_HEAVY_QUANTIZER, 127)] == \
        [0, 0.5, 1, 1]
    avif = [quantizer_strength("AVIF", q) for q in range(0, 256, 5)]
    assert avif == sorted(avif) and avif[0] < 0.05 and quantizer_strength("AVIF", AVIF_HEAVY_INDEX) == 1 == avif[-1]
    with pytest.raises(ValueError, match="no quantizer scale"):
        quantizer_strength("PNG", 10)
    for fmt in ("WEBP", "AVIF"):
        unread = InputProfile(fmt, True, None, 1.0)
        assert unread.damaged and unread.quality_strength == ASSUMED_STRENGTH[fmt]
    assert InputProfile("WEBP", True, None, 1.0, quantizer=46.0).strength == 0.4


def test_a_heic_whose_slice_cannot_be_read_runs_at_the_measured_prior():
    from worker.input_profile import ASSUMED_STRENGTH

    unread = InputProfile("HEIF", True, None, 1.0)
    assert unread.damaged and unread.strength == ASSUMED_STRENGTH["HEIF"]
    assert select(AUTO, None, unread, catalog_for(Settings())).reason == "lossy HEIF, quality not recorded"


def test_a_jpeg_compressed_tiff_is_read_as_the_jpeg_it_holds(tmp_path, catalog):
    """Taken for a lossless TIFF: one stored as RGB (as Pillow writes it) shows no JPEG lattice in its pixels
    either, so ``auto`` sent a quality-30 file to the fidelity network, below plain bicubic on it. Its quality is
    read from its JPEGTables tag, as a JPEG's from its own tables."""
    for quality in (30, 75):
        path = tmp_path / f"q{quality}.tif"
        Image.fromarray(_photo()).save(path, "TIFF", compression="jpeg", quality=quality)
        with Image.open(path) as saved:
            profile = profile_input(path, np.asarray(saved.convert("RGB")))
        assert profile.lossy and abs(profile.jpeg_quality - quality) <= 2 and profile.jpeg_grid == (0, 0)
        chosen = select(AUTO, None, profile, catalog)
        assert chosen.model == "residual_sr_cond" and chosen.strength > 0.3
        with Image.open(tmp_path / f"q{quality}.tif") as tiff:  # in rows, as Pillow gives a JPEG's own tables
            from worker.input_profile import tiff_jpeg_tables

            jpeg = tmp_path / f"q{quality}.jpg"
            Image.fromarray(_photo()).save(jpeg, "JPEG", quality=quality)
            with Image.open(jpeg) as reference:
                assert tiff_jpeg_tables(tiff)[0] == list(reference.quantization[0])
    deflated = tmp_path / "deflate.tif"
    Image.fromarray(_photo()).save(deflated, "TIFF", compression="tiff_deflate")
    assert not profile_input(deflated, _photo()).lossy
