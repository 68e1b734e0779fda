"""An AVIF's AV1 base_q_idx read from its own headers, checked against what the encoder was told to use.

libaom maps its 0..63 ``cq-level`` to base_q_idx through a fixed table (4 per step up to 61, then 249, 255), so a
file written at a given cq-level has a known index: an independent check of the container walk, the sequence
header and the frame header up to its quantization parameters (tiles included, which change how many bits come
before the index). Image sequences take the full (not reduced) headers.
"""

import struct

import numpy as np
import pytest
from PIL import Image

from worker.avif_header import _primary_item_data, av1_base_q_idx, avif_base_q_idx


def _cq_level_index(level: int) -> int:
    """libaom's quantizer_to_qindex table, the mapping from cq-level to base_q_idx."""
    return {62: 249, 63: 255}.get(level, 4 * level)


def _image(size=(160, 120), seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size[1], 0:size[0]]
    return Image.fromarray(np.clip(np.stack([xx * 1.5, yy * 2.0, (xx + yy) * 0.7], -1)
                                   + rng.normal(0, 10, (size[1], size[0], 3)), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("level", [8, 33, 55, 62])
def test_the_index_is_the_one_the_encoder_was_told(tmp_path, level):
    path = tmp_path / "a.avif"
    _image().save(path, "AVIF", speed=9, advanced={"end-usage": "q", "cq-level": str(level)})
    assert avif_base_q_idx(path) == _cq_level_index(level)


def test_tiles_change_the_header_not_the_index(tmp_path):
    """Uniform tile spacing adds increment bits before the index; a wrong tile_info() would misread it."""
    image = _image((2300, 600))
    readings = []
    for tiles in ({}, {"tile_cols": 1}, {"tile_cols": 2, "tile_rows": 1}):
        path = tmp_path / "tiled.avif"
        image.save(path, "AVIF", speed=9, advanced={"end-usage": "q", "cq-level": "30"}, **tiles)
        readings.append(avif_base_q_idx(path))
    assert readings == [_cq_level_index(30)] * 3


def test_stills_and_sequences_read_coarser_the_lower_their_quality(tmp_path):
    """A single image uses the reduced still-picture header, an image sequence the full one (timing, operating
    points, order hints): both read the coarsest indices at quality 0 (a sequence's key frame a step finer), 0 at
    100 (lossless), and fall in between."""
    image, flipped = _image(), _image(seed=1)
    for options in ({}, {"save_all": True, "append_images": [flipped], "duration": 100}):
        readings = []
        for quality in (0, 30, 60, 90, 100):
            path = tmp_path / "q.avif"
            image.save(path, "AVIF", quality=quality, **options)
            readings.append(avif_base_q_idx(path))
        assert readings[0] >= 249 and readings[-1] == 0, (options, readings)
        assert readings == sorted(readings, reverse=True) and len(set(readings)) == 5, (options, readings)


def test_alpha_is_not_mistaken_for_the_colour_image(tmp_path):
    image = _image()
    image.save(tmp_path / "opaque.avif", "AVIF", quality=60)
    rgba = image.convert("RGBA")
    rgba.putalpha(255)
    rgba.save(tmp_path / "alpha.avif", "AVIF", quality=60, alpha_quality=10)  # a coarse alpha item beside it
    assert avif_base_q_idx(tmp_path / "alpha.avif") == avif_base_q_idx(tmp_path / "opaque.avif")


def _box(kind: bytes, payload: bytes, version: int | None = None) -> bytes:
    """An ISO base media box; a full box (``version`` given) starts with its version and three flag bytes."""
    body = (bytes([version, 0, 0, 0]) if version is not None else b"") + payload
    return struct.pack(">I4s", 8 + len(body), kind) + body


def test_a_grid_image_is_read_from_its_first_tile(tmp_path):
    """Big AVIFs are often a grid of tiles (a derived ``grid`` item referencing ``av01`` items through ``dimg``):
    built here around a real frame's OBUs, with the tile item's data inside ``idat`` (construction method 1)."""
    path = tmp_path / "real.avif"
    _image().save(path, "AVIF", speed=9, advanced={"end-usage": "q", "cq-level": "21"})
    obus = _primary_item_data(path.read_bytes())
    assert av1_base_q_idx(obus) == _cq_level_index(21)
    infe = [_box(b"infe", struct.pack(">HH4s", item, 0, kind) + b"\0", version=2)  # no name
            for item, kind in ((1, b"grid"), (2, b"av01"))]
    iinf = _box(b"iinf", struct.pack(">H", 2) + b"".join(infe), version=0)
    iref = _box(b"iref", _box(b"dimg", struct.pack(">HHH", 1, 1, 2)), version=0)  # grid 1 -> tile 2
    # offset and length 4 bytes each, no base offset; item 2 in idat (method 1), one extent: all of it
    iloc = _box(b"iloc", bytes([0x44, 0x00]) + struct.pack(">HHHHHII", 1, 2, 1, 0, 1, 0, len(obus)), version=1)
    meta = _box(b"meta", _box(b"pitm", struct.pack(">H", 1), version=0) + iinf + iref + iloc + _box(b"idat", obus),
                version=0)
    grid = tmp_path / "grid.avif"
    grid.write_bytes(_box(b"ftyp", b"avif\0\0\0\0avifmif1") + meta)
    assert avif_base_q_idx(grid) == _cq_level_index(21)


def test_what_cannot_be_read_is_unknown(tmp_path):
    path = tmp_path / "a.avif"
    _image().save(path, "AVIF", quality=50)
    data = path.read_bytes()
    for name, broken in (("cut in its meta box", data[:80]), ("no meta", data.replace(b"meta", b"xeta")),
                         ("zeros", b"\0" * 64)):
        (tmp_path / name).write_bytes(broken)
        assert avif_base_q_idx(tmp_path / name) is None, name
    _image().save(tmp_path / "photo.png")
    assert avif_base_q_idx(tmp_path / "photo.png") is None
    assert av1_base_q_idx(b"\x0a\x05\x00\x00") is None  # a sequence header OBU cut short
