"""Bands: cut on tile rows, computed alone, joined bit-exactly, streamed to every output format."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared.settings import Settings
from shared.sizing import SizeRequest
from worker.bands import plan_bands
from worker.engine.base import Condition
from worker.engine.network_engine import NetworkEngine
from worker.engine.registry import EngineRegistry
from worker.render import render

# A strength, and a JPEG grid that does not start at the image's corner (only a grid-told network uses it).
CONDITION = Condition(0.4, (3, 5))


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((height, width, 3)) * 255).astype(np.uint8)


def test_bands_cover_every_row_once_on_tile_rows_and_stay_under_the_pixel_budget():
    cuts = [0, 16, 32, 48, 64, 80, 90]
    bands = plan_bands(cuts, width=100, scale=2, band_pixels=100 * 4 * 40)  # 40 LR rows of output per band
    assert [(b.y0, b.y1) for b in bands] == [(0, 32), (32, 64), (64, 90)]
    assert all(b.y0 in cuts and b.y1 in cuts for b in bands)
    assert [b.index for b in bands] == [0, 1, 2]
    one_row_each = plan_bands(cuts, width=100, scale=2, band_pixels=1)  # a tile row is the smallest band
    assert [(b.y0, b.y1) for b in one_row_each] == list(itertools.pairwise(cuts))
    assert [(b.y0, b.y1) for b in plan_bands(cuts, 100, 2, 10**9)] == [(0, 90)]


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("band_rows", [1, 2, 3])
def test_bands_join_bit_exactly_into_the_single_worker_output(tiny_engine, scale, band_rows):
    image = _image(131, 97, scale)
    single = np.asarray(tiny_engine.upscale(image, scale, condition=CONDITION))
    cuts = tiny_engine.band_cuts(*image.shape[:2])
    assert len(cuts) > 4  # several tile rows, so bands really cut the image
    bands = plan_bands(cuts, image.shape[1], scale, band_pixels=band_rows * (cuts[1] - cuts[0]) * 97 * scale**2)
    assert len(bands) > 1
    joined = np.concatenate([tiny_engine.upscale_rows(image, scale, (b.y0, b.y1), condition=CONDITION) for b in bands])
    assert joined.dtype == np.uint8 and np.abs(joined.astype(int) - single).max() == 0
    # and the single-worker output is whole-image inference up to float rounding
    whole = tiny_engine.predict(scale, image[None].astype(np.float32) / 255.0, CONDITION)[0]
    assert np.abs(joined / 255.0 - np.clip(whole, 0, 1)).max() <= 1 / 255 + 1e-6


def test_a_band_margin_smaller_than_the_receptive_field_does_not_match(tiny_engine, tmp_path):
    """The control: the same bands with windows of too little context differ from whole-image inference."""
    image = _image(131, 97, 9)
    narrow = NetworkEngine.__new__(NetworkEngine)
    narrow.__dict__.update(tiny_engine.__dict__)
    narrow.margin = 2
    whole = np.clip(np.round(tiny_engine.predict(2, image[None].astype(np.float32) / 255.0, CONDITION)[0] * 255), 0,
                    255)
    cuts = narrow.band_cuts(*image.shape[:2])
    joined = np.concatenate([narrow.upscale_rows(image, 2, (a, b), condition=CONDITION)
                             for a, b in itertools.pairwise(cuts)])
    assert np.abs(joined.astype(int) - whole).max() > 3


def test_rows_off_the_tile_grid_are_refused(tiny_engine):
    with pytest.raises(ValueError, match="tile rows"):
        tiny_engine.upscale_rows(_image(131, 97), 2, (0, 7))


@pytest.fixture(scope="module")
def engines():
    return EngineRegistry(Settings.from_env(tile_size=48))


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_a_streamed_output_equals_the_whole_one(tmp_path, engines, mode):
    source = tmp_path / "in.png"
    Image.fromarray(_image(90, 70, 3)).convert(mode).save(source)
    whole = render(source, tmp_path / "whole.png", engines, "residual_sr", SizeRequest(scale=2), "png")
    streamed = render(source, tmp_path / "streamed.png", engines, "residual_sr", SizeRequest(scale=2), "png",
                      band_pixels=140 * 40)
    assert whole.bands == 0 and streamed.bands > 2 and streamed.ran()["bands"] == streamed.bands
    with Image.open(tmp_path / "whole.png") as a, Image.open(tmp_path / "streamed.png") as b:
        assert a.mode == b.mode == mode and a.size == b.size == (140, 180)
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not list(tmp_path.glob("bands-*"))  # band files are removed


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "avif", "tiff"])
def test_streamed_outputs_keep_metadata_in_every_format(tmp_path, engines, fmt):
    exif = Image.Exif()
    exif[0x8298] = "(c) 2026 Studio Nord"
    exif.get_ifd(0x8769)[0x9003] = "2026:11:20 10:00:00"
    source = tmp_path / "in.jpg"
    Image.fromarray(_image(60, 80, 4)).save(source, "JPEG", quality=95, exif=exif, dpi=(300, 300))
    result = tmp_path / f"out.{fmt}"
    rendered = render(source, result, engines, "residual_sr", SizeRequest(scale=2), fmt, band_pixels=160 * 40)
    assert rendered.bands > 1
    with Image.open(result) as out:
        assert out.size == (160, 120)
        if fmt not in ("webp", "avif"):
            assert tuple(round(v) for v in out.info["dpi"]) == (600, 600)
        kept = out.getexif()
        assert kept[0x8298] == "(c) 2026 Studio Nord"
        if fmt == "tiff":  # for print: tiled, Deflate; IFD0 text tags added to what libvips writes
            assert out.tag_v2[322] == 256 and out.info["compression"] == "tiff_adobe_deflate"
        else:
            assert kept.get_ifd(0x8769)[0x9003] == "2026:11:20 10:00:00"


def _both_ways(tmp_path, engines, source, fmt) -> tuple:
    """The output of ``source`` at x2 made whole in memory and streamed in bands (the two writers)."""
    outputs = []
    for name, band_pixels in (("whole", None), ("streamed", 4000)):
        result = tmp_path / f"{name}.{fmt}"
        rendered = render(source, result, engines, "residual_sr", SizeRequest(scale=2), fmt,
                          **({"band_pixels": band_pixels} if band_pixels else {}))
        assert (rendered.bands > 1) == (band_pixels is not None)
        outputs.append(result)
    return tuple(outputs)


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "avif", "tiff"])
def test_both_writers_keep_the_same_metadata(tmp_path, engines, fmt):
    """A photo with Photoshop's long XMP (over a JPEG segment's 64 kB) and 300 dpi but no EXIF: the in-memory JPEG
    writer failed the finished job over the XMP while libvips dropped it silently, and a WebP kept no DPI."""
    from PIL import PngImagePlugin

    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><!-- ' + b"history " * 9000 + b"--></x:xmpmeta>"
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp.decode())
    source = tmp_path / "in.png"
    Image.fromarray(_image(60, 80, 5)).save(source, pnginfo=info, dpi=(300, 300))
    read = []
    for path in _both_ways(tmp_path, engines, source, fmt):
        with Image.open(path) as out:
            exif = out.getexif()
            dpi = out.info.get("dpi") or (float(exif[0x011A]), float(exif[0x011B]))
            has_xmp = bool(out.info.get("xmp") or out.info.get("XML:com.adobe.xmp"))
            read.append((tuple(round(v) for v in dpi), has_xmp))
    assert read[0] == read[1]
    assert read[0] == ((600, 600), fmt != "jpeg")  # kept wherever it fits
    if fmt == "png":  # in an uncompressed iTXt chunk, as the XMP specification says (libvips wrote a zTXt)
        for path in _both_ways(tmp_path, engines, source, fmt):
            assert _png_chunks(path).count(b"iTXt") == 1 and b"zTXt" not in _png_chunks(path), path



def test_both_writers_put_the_tiff_structure_first_in_a_webp_exif_chunk(tmp_path, engines):
    """libvips wrote a JPEG segment's "Exif\\0\\0" before it (ExifTool warned); the chunks after it stay whole."""
    exif = Image.Exif()
    exif[0x8298] = "(c) 2026 Studio Nord!"  # an odd-sized chunk: the padding byte moves with it
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:rights>Studio Nord</dc:rights></x:xmpmeta>'
    source = tmp_path / "in.jpg"
    Image.fromarray(_image(60, 80, 7)).save(source, "JPEG", quality=95, exif=exif, xmp=xmp)
    for path in _both_ways(tmp_path, engines, source, "webp"):
        chunks = _riff_chunks(path)
        assert chunks[b"EXIF"][:4] in (b"II*\0", b"MM\0*"), path
        assert b"Studio Nord" in chunks[b"XMP "]
        assert int.from_bytes(path.read_bytes()[4:8], "little") == path.stat().st_size - 8
        with Image.open(path) as out:
            assert out.getexif()[0x8298] == "(c) 2026 Studio Nord!"
            out.load()


def _riff_chunks(path) -> dict[bytes, bytes]:
    data, at, chunks = path.read_bytes(), 12, {}
    while at < len(data):
        size = int.from_bytes(data[at + 4:at + 8], "little")
        chunks[data[at:at + 4]] = data[at + 8:at + 8 + size]
        at += 8 + size + (size & 1)
    assert at == len(data)
    return chunks

def _png_chunks(path) -> list[bytes]:
    data, at, types = path.read_bytes(), 8, []
    while at < len(data):
        length = int.from_bytes(data[at:at + 4], "big")
        types.append(data[at + 4:at + 8])
        at += 12 + length
    return types


@pytest.mark.parametrize("fmt", ["jpeg", "png", "tiff"])
def test_a_streamed_output_states_no_made_up_resolution(tmp_path, engines, fmt):
    """libvips wrote its default 1 px/mm (25.4 dpi) into every streamed output of an input without one."""
    source = tmp_path / "in.png"
    Image.fromarray(_image(60, 80, 6)).save(source)
    whole, streamed = _both_ways(tmp_path, engines, source, fmt)
    with Image.open(whole) as a, Image.open(streamed) as b:
        assert tuple(round(v) for v in a.info.get("dpi", (72, 72))) == (72, 72)  # none said, 72 read
        assert tuple(round(v) for v in b.info["dpi"]) == (72, 72)


def test_a_streamed_png_is_about_the_size_of_the_whole_one(tmp_path, engines):
    """libvips' zlib level 1 with the "sub" filter wrote PNGs 1.5-2.7x the in-memory writer's; level 2 with "up"
    is within a few percent of it (smaller on large photos, where it matters)."""
    photo = np.asarray(Image.open(sorted(Path(__file__).parents[2].glob("shared/samples/*.jpg"))[0]).convert("RGB"))
    source = tmp_path / "in.png"
    Image.fromarray(photo[:150, :200]).save(source)
    whole, streamed = _both_ways(tmp_path, engines, source, "png")
    with Image.open(whole) as a, Image.open(streamed) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert streamed.stat().st_size <= whole.stat().st_size * 1.15


@pytest.mark.parametrize("big", [False, True])
def test_a_streamed_tiff_keeps_the_exif_text_fields_also_as_bigtiff(tmp_path, monkeypatch, big):
    from worker import streaming
    from worker.metadata import Metadata

    if big:
        monkeypatch.setattr(streaming, "BIGTIFF_FROM_BYTES", 1)
    exif = Image.Exif()
    exif[0x8298], exif[0x013B], exif[0x0110] = "(c) 2026 Studio Nord", "A. Photographer", "X"
    pixels = _image(40, 30)
    rows = streaming.RowFile(tmp_path / "rows.tif", 30, 40, 3, 2)
    rows.append(pixels)
    rows.close()
    streaming.encode_rows(rows.path, tmp_path / "out.tif", "tiff", None, Metadata(exif=exif.tobytes()))
    with Image.open(tmp_path / "out.tif") as out:
        kept = out.getexif()
        assert (kept[0x8298], kept[0x013B], kept[0x0110]) == ("(c) 2026 Studio Nord", "A. Photographer", "X")
        assert np.array_equal(np.asarray(out), pixels)
    head = (tmp_path / "out.tif").read_bytes()[:4]
    assert head == (b"II+\0" if big else b"II*\0")


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "avif", "tiff"])
def test_a_streamed_output_is_written_under_a_latin_1_name(tmp_path, engines, fmt):
    """libvips takes file names as UTF-8 only: a result streamed into ``caf\\xe9/`` (bytes named on a Latin-1
    system, its band file in there too) failed with a UnicodeEncodeError's text."""
    import os

    folder = tmp_path / os.fsdecode(b"caf\xe9")
    folder.mkdir()
    source = folder / os.fsdecode(b"caf\xe9.png")
    Image.fromarray(_image(60, 80, 5)).save(source)
    result = folder / os.fsdecode(b"r\xe9sultat." + fmt.encode())
    rendered = render(source, result, engines, "residual_sr", SizeRequest(scale=2), fmt, band_pixels=160 * 40)
    assert rendered.bands > 1
    with Image.open(result) as out:
        assert out.size == (160, 120) and out.format == {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP",
                                                        "avif": "AVIF", "tiff": "TIFF"}[fmt]
    assert sorted(p.name for p in folder.iterdir()) == sorted([source.name, result.name])  # no band folder left
