"""Which inputs are accepted: the phone and web formats are readable by every reader without anyone registering
anything first (each test runs in a fresh interpreter, where no earlier test has taught Pillow HEIF)."""

from __future__ import annotations

import subprocess
import sys

import pytest

READ_IN_A_FRESH_PROCESS = """
import io, sys, tempfile, pathlib
import numpy as np
from PIL import Image
fmt = sys.argv[1]
pixels = (np.random.default_rng(0).random((24, 32, 3)) * 255).astype(np.uint8)
if fmt == "HEIF":
    from pillow_heif import register_heif_opener  # only to write the file (the dev extra): the readers below
    register_heif_opener()                         # are on their own
buffer = io.BytesIO()
Image.fromarray(pixels).save(buffer, fmt, quality=80)
data = buffer.getvalue()
if fmt == "HEIF":  # forget the writer's registration: Pillow as a fresh API or worker process has it
    Image.OPEN.pop("HEIF", None)
    Image.ID.remove("HEIF")
from shared.formats import sniff
from worker.imaging import decode
from worker.input_profile import profile_input
path = pathlib.Path(tempfile.mkdtemp()) / "input"
path.write_bytes(data)
print(sniff(data, 10**6).format, decode(path).rgb.shape, profile_input(path, decode(path).rgb).lossy)
print(Image.OPEN[fmt][0].__module__.split(".")[0] if fmt == "HEIF" else "pillow")  # whose decoder read it
"""


@pytest.mark.parametrize("fmt,kind", [("HEIF", "heic"), ("AVIF", "avif")])
def test_sniff_decode_and_profile_read_phone_and_web_formats_on_their_own(fmt, kind):
    done = subprocess.run([sys.executable, "-c", READ_IN_A_FRESH_PROCESS, fmt], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    read, decoder = done.stdout.split("\n")[-3:-1]
    assert read == f"{kind} (24, 32, 3) True"
    assert decoder == ("pi_heif" if fmt == "HEIF" else "pillow")  # decode-only libheif: no GPL encoder deployed


def test_the_input_pixel_setting_holds_above_pillows_own_cap():
    """Pillow refuses images over about 179 MP as decompression bombs: with UPSCALER_MAX_INPUT_PIXELS set to 300 MP,
    a 200 MP upload was still refused, in Pillow's words. The setting is the limit, both ways, and in a fresh process
    (a test that imported the worker first would have lifted the cap already)."""
    code = """
import io
from PIL import Image
from shared.formats import ImageRejected, sniff
buffer = io.BytesIO()
Image.new("1", (20000, 10000)).save(buffer, "PNG")  # 200 MP, a few kB
print(sniff(buffer.getvalue(), 300_000_000).width)
try:
    sniff(buffer.getvalue(), 100_000_000)
except ImageRejected as exc:
    print(exc.code, exc.extra["limit"])
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["20000", "image_too_large", "100000000"]


def test_the_jpeg_side_limit_is_the_encoders():
    """libjpeg refuses sides over 65500 (the format's 16 bits would allow 65535): outputs between the two passed
    the submit check, ran the whole network and failed when written."""
    import io

    from PIL import Image

    from shared.limits import MAX_SIDE

    Image.new("L", (MAX_SIDE["jpeg"], 1)).save(io.BytesIO(), "JPEG")
    with pytest.raises(OSError):
        Image.new("L", (MAX_SIDE["jpeg"] + 1, 1)).save(io.BytesIO(), "JPEG")


@pytest.mark.parametrize("fmt", ["AVIF", "PNG", "JPEG", "WEBP"])
def test_a_damaged_file_is_refused_as_unsupported_whatever_its_codec_raises(fmt):
    """Seeded byte flips of a small image: each is read or refused as ``unsupported_image`` (a 415). Pillow's AVIF
    plugin raises RuntimeError on some ("Failed to decode image"), which went out as a 500."""
    import random

    from shared.formats import ImageRejected, sniff
    from tests.conftest import image_bytes

    data, rng, causes = image_bytes(width=48, height=32, fmt=fmt), random.Random(5), set()
    for _ in range(300):
        damaged = bytearray(data)
        for _ in range(4):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        try:
            sniff(bytes(damaged), 10**8)
        except ImageRejected as exc:
            assert exc.code in ("unsupported_image", "image_too_large")
            causes.add(type(exc.__cause__).__name__)
    if fmt == "AVIF":
        assert "RuntimeError" in causes  # the case that was a 500 is among them


@pytest.mark.parametrize("interruption", ["SoftTimeLimitExceeded", "MemoryError"])
def test_running_out_of_time_or_memory_inside_a_codec_is_not_the_files_fault(monkeypatch, tmp_path, interruption):
    """The catch-all that turns a codec's failures into "not a readable image" let a job's soft time limit (raised
    wherever the task is) through as the file's fault: a fetched photo failed ``input_unreadable``. Both pass
    through sniffing and decoding as themselves."""
    from celery.exceptions import SoftTimeLimitExceeded
    from PIL import PngImagePlugin

    from shared.formats import sniff
    from tests.conftest import image_bytes
    from worker.imaging import decode

    error = {"SoftTimeLimitExceeded": SoftTimeLimitExceeded, "MemoryError": MemoryError}[interruption]

    def interrupted(*_args, **_kwargs):
        raise error()

    data = image_bytes(width=48, height=32, fmt="PNG")
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "verify", interrupted)
    with pytest.raises(error):
        sniff(data, 10**8)
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", interrupted)
    (tmp_path / "in.png").write_bytes(data)
    with pytest.raises(error):
        decode(tmp_path / "in.png")


@pytest.mark.parametrize("tags", [{50706: (b"\x01\x04\x00\x00", 1)}, {254: (1, 4)}])
def test_a_camera_raw_is_refused_not_taken_for_its_preview(tags):
    """A DNG's first directory is the camera's small preview (reduced-resolution, with a DNGVersion tag): it was
    accepted, and a studio's raw came back as 4x its 256 px thumbnail, without a word."""
    import io

    from PIL import Image, TiffImagePlugin

    from shared.formats import ImageRejected, sniff

    info = TiffImagePlugin.ImageFileDirectory_v2()
    for tag, (value, kind) in tags.items():
        info[tag], info.tagtype[tag] = value, kind
    raw = io.BytesIO()
    Image.new("RGB", (256, 192)).save(raw, "TIFF", tiffinfo=info)
    with pytest.raises(ImageRejected, match="camera raw files") as refused:
        sniff(raw.getvalue(), 10**8)
    assert refused.value.code == "unsupported_image"
    plain = io.BytesIO()
    Image.new("RGB", (256, 192)).save(plain, "TIFF")
    assert sniff(plain.getvalue(), 10**8).width == 256


@pytest.mark.parametrize("bands", [5, 6])
def test_a_tiff_with_extra_channels_is_refused_in_words_that_say_so(tmp_path, bands):
    """Pillow cannot open a TIFF of more than four channels (a Photoshop file with a saved selection, CMYK with
    alpha) and says "cannot identify image file": it was refused as "not a readable image", a broken file."""
    import numpy as np
    import pyvips

    from shared.formats import ImageRejected, sniff

    path = tmp_path / "extra.tif"
    pixels = np.zeros((8, 10, bands), np.uint8)
    pyvips.Image.new_from_memory(pixels.tobytes(), 10, 8, bands, "uchar").tiffsave(str(path))
    with pytest.raises(ImageRejected, match=f"this TIFF has {bands} channels") as refused:
        sniff(path.read_bytes(), 10**8)
    assert refused.value.code == "unsupported_image"


@pytest.mark.parametrize("bands,sample,says", [(3, "float", "3 channels of 32-bit floating-point samples"),
                                               (2, "ushort", "2 channels of 16-bit integer samples")])
def test_a_tiff_layout_pillow_cannot_open_is_named_in_the_refusal(tmp_path, bands, sample, says):
    """An HDR render (floating-point RGB) and 16-bit grey with alpha were "not a readable image": a broken file,
    to a print shop whose every other program opens them."""
    import numpy as np
    import pyvips

    from shared.formats import ImageRejected, sniff

    path = tmp_path / "layout.tif"
    dtype = np.float32 if sample == "float" else np.uint16
    image = pyvips.Image.new_from_memory(np.zeros((8, 10, bands), dtype).tobytes(), 10, 8, bands, sample)
    image.copy(interpretation="grey16" if bands == 2 else "scrgb").tiffsave(str(path))
    with pytest.raises(ImageRejected, match=says) as refused:
        sniff(path.read_bytes(), 10**8)
    assert refused.value.code == "unsupported_image" and "8 bits per channel" in str(refused.value)


def test_a_16_bit_cielab_tiff_is_refused_naming_its_colour_model(tmp_path):
    """Refused as "3 channels of 16-bit integer samples ... save it with 8 bits per channel, or 16 bits": the
    advice named what the file already was."""
    import numpy as np
    import pyvips

    from shared.formats import ImageRejected, sniff

    path = tmp_path / "lab.tif"
    lab = pyvips.Image.new_from_memory(np.zeros((8, 10, 3), np.uint16).tobytes(), 10, 8, 3, "ushort")
    lab.copy(interpretation="labs").tiffsave(str(path))
    with pytest.raises(ImageRejected, match="CIELab colour with 16-bit samples") as refused:
        sniff(path.read_bytes(), 10**8)
    assert refused.value.code == "unsupported_image" and "convert it to RGB" in str(refused.value)


def _png_with(chunks: list[bytes], before_idat: bool = True) -> bytes:
    """A small PNG with ``chunks`` (whole chunks: length, type, data, CRC) before or after its image data."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (20, 12), (200, 40, 40)).save(buffer, "PNG")
    data = buffer.getvalue()
    idat = data.index(b"IDAT") - 4
    iend = data.index(b"IEND") - 4
    extra = b"".join(chunks)
    return data[:idat] + extra + data[idat:] if before_idat else data[:iend] + extra + data[iend:]


def _chunk(kind: bytes, payload: bytes = b"") -> bytes:
    import zlib

    return len(payload).to_bytes(4, "big") + kind + payload + zlib.crc32(kind + payload).to_bytes(4, "big")


@pytest.mark.parametrize("before_idat", [True, False])
def test_a_file_of_countless_empty_segments_is_refused_before_pillow_walks_them(before_idat):
    """Pillow walks a PNG's chunks (and a JPEG's segments) in Python: a 45 MB PNG of 4 million empty chunks held
    an API thread for 38 s before it was accepted, a JPEG of 2.5 million comments 7 s."""
    import io

    from PIL import Image

    from shared.formats import MAX_SEGMENTS, ImageRejected, sniff

    with pytest.raises(ImageRejected) as png:
        sniff(_png_with([_chunk(b"abCd")] * (MAX_SEGMENTS + 1), before_idat), 10**8)
    assert png.value.code == "unsupported_image" and "chunks" in str(png.value)
    buffer = io.BytesIO()
    Image.new("RGB", (20, 12)).save(buffer, "JPEG")
    jpeg = buffer.getvalue()
    with pytest.raises(ImageRejected) as comments:
        sniff(jpeg[:2] + b"\xff\xfe\x00\x02" * (MAX_SEGMENTS + 1) + jpeg[2:], 10**8)
    assert comments.value.code == "unsupported_image" and "segments" in str(comments.value)
    # as many as a real file holds pass: a PNG's image data in thousands of small IDAT pieces, a JPEG's comments
    assert sniff(_png_with([_chunk(b"abCd")] * 5000, before_idat), 10**8).width == 20
    assert sniff(jpeg[:2] + b"\xff\xfe\x00\x02" * 5000 + jpeg[2:], 10**8).format == "jpeg"


def test_a_png_whose_text_passes_pillows_limit_is_refused_naming_its_metadata():
    """It was refused as "not a readable image": the pixels were fine, its metadata too large."""
    import zlib

    from shared.formats import ImageRejected, sniff

    text = _chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"x" * (20 * 2**20)))
    with pytest.raises(ImageRejected) as refused:
        sniff(_png_with([text] * 4), 10**8)  # 80 MB of text: past Pillow's 64 MB in all
    assert refused.value.code == "unsupported_image" and "text chunks" in str(refused.value)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_a_damaged_exif_block_turns_nothing_and_refuses_nothing(fmt):
    """A PNG's eXIf chunk (before its pixels) or a WebP's EXIF chunk holding no TIFF structure was refused as "not a
    readable image" at submit, though the worker reads such files (it drops the damaged EXIF)."""
    import io

    from PIL import Image

    from shared.formats import sniff

    buffer = io.BytesIO()
    Image.new("RGB", (30, 20), (90, 120, 150)).save(buffer, fmt, exif=b"XXXXXXXXXXXXXXXX")
    assert (sniff(buffer.getvalue(), 10**8).width, sniff(buffer.getvalue(), 10**8).height) == (30, 20)
