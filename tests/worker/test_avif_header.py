"""An AVIF's AV1 base_q_idx read from its own headers, checked against what the encoder was told to use.

libaom maps its 0..63 ``cq-level`` to base_q_idx through a fixed table (4 per step up to 61, then 249, 255), so a
file written at a given cq-level has a known index: an independent check of the container walk, the sequence
header and the frame header up to its quantization parameters (tiles included, which change how many bits come
before the index). Image sequences take the full (not reduced) headers.
"""

import struct

import pytest
from PIL import Image

from tests.images import photo
from worker.avif_header import av1_base_q_idx, avif_base_q_idx
from worker.heif_container import read_primary_item


def _cq_level_index(level: int) -> int:
    """libaom's quantizer_to_qindex table, the mapping from cq-level to base_q_idx."""
    return {62: 249, 63: 255}.get(level, 4 * level)


@pytest.mark.parametrize("level", [8, 33, 55, 62])
def test_the_index_is_the_one_the_encoder_was_told(tmp_path, level):
    path = tmp_path / "a.avif"
    photo(160, 120).save(path, "AVIF", speed=9, advanced={"end-usage": "q", "cq-level": str(level)})
    assert avif_base_q_idx(path) == _cq_level_index(level)


def test_tiles_change_the_header_not_the_index(tmp_path):
    """Uniform tile spacing adds increment bits before the index; a wrong tile_info() would misread it."""
    image = photo(2300, 600)
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
    image, flipped = photo(160, 120), photo(160, 120, seed=1)
    for options in ({}, {"save_all": True, "append_images": [flipped], "duration": 100}):
        readings = []
        for quality in (0, 30, 60, 90, 100):
            path = tmp_path / "q.avif"
            image.save(path, "AVIF", quality=quality, **options)
            readings.append(avif_base_q_idx(path))
        assert readings[0] >= 249 and readings[-1] == 0, (options, readings)
        assert readings == sorted(readings, reverse=True) and len(set(readings)) == 5, (options, readings)


def test_alpha_is_not_mistaken_for_the_colour_image(tmp_path):
    image = photo(160, 120)
    image.save(tmp_path / "opaque.avif", "AVIF", quality=60)
    rgba = image.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(image.size))  # real transparency: an alpha item of its own
    rgba.save(tmp_path / "alpha.avif", "AVIF", quality=60, alpha_quality=10)  # coded far coarser than the colour
    data = (tmp_path / "alpha.avif").read_bytes()
    assert data.count(b"av01") >= 2  # two AV1 items: colour (primary) and alpha
    assert avif_base_q_idx(tmp_path / "alpha.avif") == avif_base_q_idx(tmp_path / "opaque.avif")


def _item_obus(path) -> bytes:
    """The OBUs of a real AVIF's primary item (whole: a small file's item is under the reader's limit)."""
    with open(path, "rb") as fh:
        return read_primary_item(fh, b"av01").head


def _box(kind: bytes, payload: bytes, version: int | None = None) -> bytes:
    """An ISO base media box; a full box (``version`` given) starts with its version and three flag bytes."""
    body = (bytes([version, 0, 0, 0]) if version is not None else b"") + payload
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _grid_file(tile: bytes, decoy: bytes, in_idat: bool) -> bytes:
    """A grid image (item 5) whose first tile is item 7, beside a decoy AV1 item 2 listed first everywhere: the
    reader must follow pitm -> grid -> the first dimg reference -> that item's own iloc entry. The tile's data is
    in idat (iloc version 1, construction method 1) or in mdat after a base offset, in two extents (version 0)."""
    infe = b"".join(_box(b"infe", struct.pack(">HH4s", item, 0, kind) + b"\0", version=2)
                    for item, kind in ((2, b"av01"), (5, b"grid"), (7, b"av01")))
    iinf = _box(b"iinf", struct.pack(">H", 3) + infe, version=0)
    iref = _box(b"iref", _box(b"dimg", struct.pack(">HHHH", 5, 2, 7, 2)), version=0)  # grid 5 -> tiles 7, 2
    pitm = _box(b"pitm", struct.pack(">H", 5), version=0)
    if in_idat:
        idat = decoy + tile
        entries = struct.pack(">HHHHII", 2, 1, 0, 1, 0, len(decoy)) + struct.pack(">HHHHII", 7, 1, 0, 1, len(decoy),
                                                                                  len(tile))
        iloc = _box(b"iloc", bytes([0x44, 0x00]) + struct.pack(">H", 2) + entries, version=1)
        meta = _box(b"meta", pitm + iinf + iref + iloc + _box(b"idat", idat), version=0)
        return _box(b"ftyp", b"avif\0\0\0\0avifmif1") + meta

    def layout(base: int) -> bytes:
        half = len(tile) // 2
        decoy_entry = struct.pack(">HHIHII", 2, 0, base, 1, 0, len(decoy))
        tile_entry = struct.pack(">HHIHIIII", 7, 0, base, 2, len(decoy), half, len(decoy) + half, len(tile) - half)
        iloc = _box(b"iloc", bytes([0x44, 0x40]) + struct.pack(">H", 2) + decoy_entry + tile_entry, version=0)
        return _box(b"ftyp", b"avif\0\0\0\0avifmif1") + _box(b"meta", pitm + iinf + iref + iloc, version=0)

    head = layout(0)
    return layout(len(head) + 8) + _box(b"mdat", decoy + tile)  # the base offset: where mdat's payload starts


@pytest.mark.parametrize("in_idat", [True, False], ids=["idat", "mdat with base offset and two extents"])
def test_a_grid_image_is_read_from_its_first_tile(tmp_path, in_idat):
    """Big AVIFs are often a grid of tiles (a derived ``grid`` item referencing ``av01`` items through ``dimg``)."""
    obus = {}
    for level in (21, 50):
        path = tmp_path / f"cq{level}.avif"
        photo(160, 120, seed=level).save(path, "AVIF", speed=9, advanced={"end-usage": "q", "cq-level": str(level)})
        obus[level] = _item_obus(path)
        assert av1_base_q_idx(obus[level]) == _cq_level_index(level)
    grid = tmp_path / "grid.avif"
    grid.write_bytes(_grid_file(tile=obus[21], decoy=obus[50], in_idat=in_idat))
    assert avif_base_q_idx(grid) == _cq_level_index(21)


def test_the_last_obu_may_go_without_its_size(tmp_path):
    """An item's last OBU may leave out its size field (it fills the rest of the data)."""
    path = tmp_path / "a.avif"
    photo(160, 120).save(path, "AVIF", speed=9, advanced={"end-usage": "q", "cq-level": "40"})
    obus, position, last = _item_obus(path), 0, 0
    while position < len(obus):  # find the last OBU: header, leb128 size, payload
        last, size, shift = position, 0, 0
        position += 1 + ((obus[position] >> 2) & 1)
        while True:
            size |= (obus[position] & 0x7F) << shift
            position, shift = position + 1, shift + 7
            if not obus[position - 1] & 0x80:
                break
        position += size
    header_end = last + 1 + ((obus[last] >> 2) & 1)
    size_end = header_end
    while obus[size_end] & 0x80:
        size_end += 1
    unsized = obus[:last] + bytes([obus[last] & ~0x02]) + obus[last + 1:header_end] + obus[size_end + 1:]
    assert av1_base_q_idx(unsized) == av1_base_q_idx(obus) == _cq_level_index(40)
