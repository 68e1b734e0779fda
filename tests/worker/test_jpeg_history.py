"""A JPEG found in a lossless file's pixels: its quality and block grid, and no JPEG where there was none."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from shared.catalog import AUTO, catalog_for
from shared.settings import Settings
from worker.engine.selection import select
from worker.engine.strength import jpeg_strength
from worker.input_profile import profile_input
from worker.jpeg_history import find_jpeg_history
from worker.jpeg_tables import LUMA, scaled


def _scene(width: int = 200, height: int = 152, seed: int = 0, grain: float = 6.0) -> np.ndarray:
    """Smooth shapes and a little texture (``grain``): a photo's mix of flat regions, edges and detail."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack([90 + 80 * np.sin(xx / 17.0), 120 + 60 * np.cos(yy / 23.0), 100 + 0.3 * (xx + yy)], -1)
    for _ in range(12):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(8, 40)
        rgb[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += rng.uniform(-60, 60, 3)
    return np.clip(rgb + rng.normal(0, grain, rgb.shape), 1, 254).astype(np.uint8)


def _decoded_jpeg(rgb: np.ndarray, quality: int, shift: tuple[int, int] = (0, 0), subsampling: int = 2,
                  mode: str = "RGB") -> np.ndarray:
    """``rgb`` through a JPEG of ``quality`` whose grid starts ``shift`` pixels above and left of it (a crop)."""
    padded = np.pad(rgb, ((shift[0], 0), (shift[1], 0), (0, 0)), mode="edge")
    buffer = io.BytesIO()
    Image.fromarray(padded).convert(mode).save(buffer, "JPEG", quality=quality, subsampling=subsampling)
    with Image.open(buffer) as image:
        return np.asarray(image.convert("RGB"))[shift[0]:, shift[1]:]


@pytest.mark.parametrize("quality", [20, 35, 50, 62, 75, 85, 90])
@pytest.mark.parametrize("subsampling", [0, 2])
def test_the_quality_and_grid_of_a_decoded_jpeg_are_found(quality, subsampling):
    shift = (quality % 8, (3 * quality) % 8)
    history = find_jpeg_history(_decoded_jpeg(_scene(seed=quality), quality, shift, subsampling))
    assert history is not None
    assert history.grid == shift
    # qualities whose steps at the low frequencies are the same cannot be told apart; the strength barely moves
    found_steps = scaled(LUMA, history.quality)[[8 * v + u for v, u in history.steps]]
    assert list(found_steps) == list(scaled(LUMA, quality)[[8 * v + u for v, u in history.steps]])
    assert abs(history.quality - quality) <= 2
    assert all(step == scaled(LUMA, quality)[8 * v + u] for (v, u), step in history.steps.items())


def test_a_greyscale_jpeg_is_found_too():
    history = find_jpeg_history(_decoded_jpeg(_scene(), 60, (5, 2), mode="L"))
    assert history is not None and (history.quality, history.grid) == (60, (5, 2))


def _text_page() -> np.ndarray:
    image = Image.new("RGB", (400, 300), "white")
    draw = ImageDraw.Draw(image)
    for row in range(0, 300, 24):
        draw.text((6, row), "Order 2026-11-27 total 1,234.56 EUR, item 42", fill=(row % 200, 40, 160))
        draw.rectangle((300, row, 300 + row // 3, row + 10), fill=(200, row % 250, 30))
    return np.asarray(image)


def _checkerboard_canvas(size: int, light: int, dark: int) -> np.ndarray:
    """An editor's screenshot: dark chrome, a transparency checkerboard, a layer of photo on it."""
    canvas = np.full((400, 560, 3), 45, dtype=np.uint8)
    yy, xx = np.mgrid[0:340, 0:480]
    canvas[30:370, 40:520] = np.where(((yy // size + xx // size) % 2 == 0), light, dark)[..., None]
    canvas[100:252, 150:350] = _scene()
    return canvas


@pytest.mark.parametrize("quality", [15, 20])
def test_a_coarse_jpegs_grid_is_found_where_its_blocks_are_flattest(quality):
    # flat blocks leave few coefficients to read on the true grid, while half a block off, the edges where they
    # meet sit on a finer lattice: the blockiest position is the one tried there
    shift = (2, 7)
    history = find_jpeg_history(_decoded_jpeg(_scene(400, 304, seed=quality, grain=3.0), quality, shift))
    assert history is not None and history.grid == shift and abs(history.quality - quality) <= 2


@pytest.mark.parametrize("kind", ["scene", "noisy", "text", "gradient", "posterized", "nearest", "palette",
                                  "checkerboard", "checkerboard_fine"])
def test_pixels_that_were_never_a_jpeg_show_none(kind):
    scene = _scene()
    rng = np.random.default_rng(1)
    images = {
        "scene": lambda: scene,
        "noisy": lambda: np.clip(scene + rng.normal(0, 4, scene.shape), 0, 255).astype(np.uint8),
        "text": _text_page,
        "gradient": lambda: np.tile(np.linspace(0, 255, 300)[None, :, None], (200, 1, 3)).astype(np.uint8),
        "posterized": lambda: (scene // 32 * 32).astype(np.uint8),
        "nearest": lambda: np.asarray(Image.fromarray(scene).resize((400, 304), Image.NEAREST)),
        "palette": lambda: np.asarray(Image.fromarray(scene).convert("P").convert("RGB")),
        "checkerboard": lambda: _checkerboard_canvas(8, 204, 255),
        "checkerboard_fine": lambda: _checkerboard_canvas(4, 153, 102),
    }
    assert find_jpeg_history(images[kind]()) is None


def test_an_image_too_small_to_tell_shows_none():
    assert find_jpeg_history(_decoded_jpeg(_scene(24, 40), 30)) is None


@pytest.fixture(scope="module")
def catalog():
    return catalog_for(Settings())


def test_a_png_holding_a_decoded_jpeg_goes_where_its_jpeg_would(tmp_path, catalog):
    pixels = _decoded_jpeg(_scene(), 50, (3, 5))
    path = tmp_path / "resaved.png"
    Image.fromarray(pixels).save(path, "PNG")
    profile = profile_input(path, pixels)
    assert (profile.format, profile.lossy, profile.jpeg_quality) == ("PNG", False, None)
    found = profile.earlier_jpeg_quality
    assert abs(found - 50) <= 2 and profile.jpeg_grid == (3, 5)  # 50 and 51 share the steps read
    assert profile.compressed and profile.strength == round(jpeg_strength(found), 3)
    chosen = select(AUTO, None, profile, catalog)
    assert chosen.model == catalog[AUTO].routes["robust"] and chosen.strength == profile.strength
    assert chosen.reason == f"PNG holding a decoded JPEG of quality {found}"
    assert chosen.condition.jpeg_grid == (3, 5)
    assert chosen.to_dict()["input"]["earlier_jpeg_quality"] == found

    clean = tmp_path / "clean.png"
    Image.fromarray(_scene(grain=1.0)).save(clean, "PNG")
    clean_profile = profile_input(clean, _scene(grain=1.0))  # too little grain to count as noise
    assert clean_profile.earlier_jpeg_quality is None and clean_profile.jpeg_grid is None
    assert select(AUTO, None, clean_profile, catalog).model == catalog[AUTO].routes["fidelity"]


def _jpeg_profile(tmp_path, pixels: np.ndarray, quality: int):
    path = tmp_path / "in.jpg"
    Image.fromarray(pixels).save(path, "JPEG", quality=quality)
    with Image.open(path) as image:
        return profile_input(path, np.asarray(image.convert("RGB")))


@pytest.mark.parametrize("quality", [30, 50, 75, 90])
def test_a_jpeg_saved_once_is_read_from_its_own_tables(tmp_path, quality):
    profile = _jpeg_profile(tmp_path, _scene(seed=quality), quality)
    assert (profile.jpeg_quality, profile.earlier_jpeg_quality, profile.jpeg_grid) == (quality, None, (0, 0))


@pytest.mark.parametrize("preset", ["web_low", "web_medium", "low", "medium"])
def test_a_jpeg_saved_once_with_tables_of_another_shape_is_not_read_as_saved_twice(tmp_path, preset):
    # Photoshop-like tables: their steps are not libjpeg's, so a quality fitted to the steps read differs from the
    # one read from the tables; step by step, the pixels show the file's own table, not a coarser one
    path = tmp_path / "preset.jpg"
    Image.fromarray(_scene(400, 304, seed=3)).save(path, "JPEG", quality=preset)
    with Image.open(path) as image:
        profile = profile_input(path, np.asarray(image.convert("RGB")))
    assert profile.earlier_jpeg_quality is None and profile.jpeg_grid == (0, 0)


def test_a_jpeg_saved_again_finer_takes_the_first_encodes_damage(tmp_path, catalog):
    first = _decoded_jpeg(_scene(seed=4), 40)
    profile = _jpeg_profile(tmp_path, first, 92)
    assert profile.jpeg_quality == 92 and abs(profile.earlier_jpeg_quality - 40) <= 2
    assert profile.strength == round(jpeg_strength(profile.earlier_jpeg_quality), 3) > jpeg_strength(92)
    chosen = select(AUTO, None, profile, catalog)
    assert chosen.model == catalog[AUTO].routes["robust"]
    assert chosen.reason == f"JPEG quality 92, saved again from a JPEG of quality {profile.earlier_jpeg_quality}"
    near_lossless = _jpeg_profile(tmp_path, first, 98)  # a camera-fine re-save of a coarse JPEG is not clean
    assert not near_lossless.near_lossless and near_lossless.compressed


def test_the_job_path_runs_a_png_holding_a_jpeg_as_that_jpeg(tmp_path, catalog):
    from shared.sizing import SizeRequest
    from worker.engine.registry import EngineRegistry
    from worker.render import render

    source = tmp_path / "product.png"
    Image.fromarray(_decoded_jpeg(_scene(), 60, (2, 6))).save(source, "PNG")
    rendered = render(source, tmp_path / "out.png", EngineRegistry(Settings()), AUTO, SizeRequest(scale=2), "png")
    ran = rendered.selection.to_dict()
    assert ran["model"] == catalog[AUTO].routes["robust"] and ran["reason"].startswith("PNG holding a decoded JPEG")
    assert ran["input"]["jpeg_grid"] == (2, 6) and abs(ran["input"]["earlier_jpeg_quality"] - 60) <= 2
    with Image.open(tmp_path / "out.png") as out:
        assert out.size == (400, 304)
