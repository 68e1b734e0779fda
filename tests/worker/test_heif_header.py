"""A HEIC's HEVC slice QP read from its own headers, checked against what the encoder was told to use.

x265 in constant-QP mode codes an intra picture at its ``qp`` less 6·log2(``ipratio``): with ipratio 1 the slice
QP is the one asked for, an independent check of the container walk (the item's ``hvcC`` property through
``ipma``), the parameter sets (emulation prevention, profile_tier_level, the SPS up to its SAO flag, the PPS's
init_qp) and the slice header up to ``slice_qp_delta``.
"""

import pytest

from shared.formats import register_decoders
from tests.images import photo
from worker.heif_header import heif_slice_qp


@pytest.fixture(autouse=True)
def _heif_writer():
    register_decoders()  # pillow-heif's plugin writes HEIF too


@pytest.mark.parametrize("qp", [12, 27, 40])
def test_the_qp_is_the_one_the_encoder_was_told(tmp_path, qp):
    path = tmp_path / "a.heic"
    photo(160, 120).save(path, "HEIF", quality=50, enc_params={"x265:qp": str(qp), "x265:ipratio": "1.0"})
    assert heif_slice_qp(path) == qp


def test_x265s_intra_offset_shows(tmp_path):
    """At x265's default ipratio of 1.4, an intra picture is coded 6·log2(1.4) ≈ 3 QP finer than asked."""
    path = tmp_path / "a.heic"
    photo(160, 120).save(path, "HEIF", quality=50, enc_params={"x265:qp": "30"})
    assert heif_slice_qp(path) == 27


def test_lower_qualities_read_coarser_and_sizes_do_not_matter(tmp_path):
    readings = []
    for quality in (10, 40, 70, 100):
        path = tmp_path / "q.heic"
        photo(160, 120).save(path, "HEIF", quality=quality)
        readings.append(heif_slice_qp(path))
    assert readings == sorted(readings, reverse=True) and len(set(readings)) == 4 and readings[-1] == 0
    big = tmp_path / "big.heic"
    photo(1100, 700).save(big, "HEIF", quality=40)
    assert heif_slice_qp(big) == readings[1]
