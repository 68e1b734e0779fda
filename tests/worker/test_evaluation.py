"""The benchmark protocols' LR files: what kind of file each one is, seeded, and refused when unknown."""

import io

import numpy as np
import pytest

from shared.formats import open_image
from worker.evaluation import PROTOCOLS, decode, jpeg_file, lr_file
from worker.input_profile import estimate_jpeg_quality


def _hr():
    yy, xx = np.mgrid[0:96, 0:128]
    return np.stack([xx * 2, yy * 2, (xx + yy) % 256], -1).astype(np.uint8)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_each_protocol_writes_the_file_a_user_would_send(protocol):
    data, suffix = lr_file(_hr(), 4, protocol, seed=3)
    with open_image(io.BytesIO(data)) as image:
        assert image.size == (32, 24)
        if protocol.endswith("_png"):  # a PNG of the decoded JPEG, cropped as the LR
            assert (suffix, image.format) == (".png", "PNG")
        elif "jpeg" in protocol:
            assert (suffix, image.format) == (".jpg", "JPEG")
            assert estimate_jpeg_quality(image.quantization) == int(protocol.rsplit("jpeg", 1)[1])
        elif protocol.startswith("webp"):
            assert (suffix, image.format) == (".webp", "WEBP")
            assert data[12:16] == b"VP8 "  # lossy
        elif protocol[:4] in ("heif", "avif"):
            assert (suffix, image.format) == ((".heic", "HEIF") if protocol.startswith("heif") else (".avif", "AVIF"))
        else:
            assert (suffix, image.format) == (".png", "PNG")
    assert lr_file(_hr(), 4, protocol, seed=3)[0] == data  # seeded: the same file every run


def test_the_noisy_jpeg_protocol_is_the_noise_protocol_saved_as_a_quality_90_jpeg():
    noisy_lr = decode(lr_file(_hr(), 2, "noise", seed=1)[0])  # lossless: exactly the noisy LR
    assert lr_file(_hr(), 2, "noise_jpeg90", seed=1)[0] == jpeg_file(noisy_lr, 90)
    assert lr_file(_hr(), 2, "noise_jpeg90", seed=1)[0] != lr_file(_hr(), 2, "jpeg90", seed=1)[0]


def test_resaved_jpeg_protocols_decode_the_first_jpeg_and_save_it_again():
    from worker.evaluation import RESAVED_GRID_SHIFT
    from worker.quality import bicubic_downscale

    lr = bicubic_downscale(_hr(), 2)
    top, left = RESAVED_GRID_SHIFT
    padded = np.pad(lr, ((top, 0), (left, 0), (0, 0)), mode="edge")
    expected = decode(jpeg_file(padded, 50))[top:, left:]
    assert np.array_equal(decode(lr_file(_hr(), 2, "jpeg50_png")[0]), expected)
    assert not np.array_equal(expected, decode(lr_file(_hr(), 2, "jpeg50")[0]))  # another grid, other damage
    assert lr_file(_hr(), 2, "jpeg50_jpeg90")[0] == jpeg_file(decode(jpeg_file(lr, 50)), 90)


def test_the_grey_noise_protocol_adds_the_same_noise_to_every_channel():
    from worker.evaluation import GREY_NOISE_SIGMA
    from worker.quality import bicubic_downscale

    clean = bicubic_downscale(_hr(), 2).astype(int)
    noise = decode(lr_file(_hr(), 2, "grey_noise", seed=1)[0]).astype(int) - clean
    inside = (clean > 30).all(-1) & (clean < 225).all(-1)  # away from 0 and 255, where clipping would differ
    assert (noise[inside][:, 0] == noise[inside][:, 1]).all() and (noise[inside][:, 1] == noise[inside][:, 2]).all()
    assert abs(noise[inside][:, 0].std() - GREY_NOISE_SIGMA) < 0.5


def test_an_unknown_protocol_is_refused():
    with pytest.raises(ValueError, match="unknown protocol"):
        lr_file(_hr(), 2, "jpeg80")


def test_a_benchmark_set_is_the_images_an_input_folder_holds(tmp_path):
    """load_benchmark took .png, .bmp and .jpg only, its own list: a set of TIFFs or WebPs was "no benchmark
    images"; it now reads the suffixes every input folder is read by (shared.formats), dot-files left."""
    from PIL import Image

    from worker.evaluation import load_benchmark

    folder = tmp_path / "set5"
    folder.mkdir()
    for index, name in enumerate(("a.png", "b.TIF", "c.webp", "d.jpeg")):
        Image.new("RGB", (8, 6), (index * 60, 0, 0)).save(folder / name, quality=100, lossless=True)
    (folder / "._a.png").write_bytes(b"AppleDouble")
    (folder / "notes.txt").write_text("not an image")
    images = load_benchmark(folder)
    assert [int(image[0, 0, 0]) for image in images] == [0, 60, 120, 180]
    with pytest.raises(FileNotFoundError, match=r"no benchmark set 'st5' in .* \(there: set5\)"):
        load_benchmark(tmp_path / "st5")


def test_a_missing_heic_writer_is_said_before_anything_is_measured(monkeypatch):
    """Without pillow-heif (the dev extra) the heifQ protocols were a RuntimeError traceback after the earlier
    protocols' tables; it is now the refusal the command line prints in one line, checked first."""
    import sys

    from shared.errors import Refusal
    from worker.evaluation import check_writers, register_heif_writer

    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # import pillow_heif then fails
    register_heif_writer.cache_clear()
    try:
        check_writers(["clean", "jpeg75"])  # nothing to check
        with pytest.raises(Refusal, match="needs pillow-heif"):
            check_writers(["clean", "heif50"])
    finally:
        register_heif_writer.cache_clear()
