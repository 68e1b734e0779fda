"""A HEIC's HEVC slice QP read from its own headers, checked against what the encoder was told to use.

x265 in constant-QP mode codes an intra picture at its ``qp`` less 6·log2(``ipratio``): with ipratio 1 the slice
QP is the one asked for, an independent check of the container walk (the item's ``hvcC`` property through
``ipma``), the parameter sets (emulation prevention, profile_tier_level, the SPS up to its SAO flag, the PPS's
init_qp) and the slice header up to ``slice_qp_delta``.
"""

import numpy as np
import pytest

from tests.images import photo
from worker.evaluation import register_heif_writer
from worker.heif_header import heif_slice_qp


@pytest.fixture(autouse=True)
def _heif_writer():
    register_heif_writer()  # pillow-heif (the dev extra) writes HEIC files


@pytest.mark.parametrize("qp", [12, 27, 40])
def test_the_qp_is_the_one_the_encoder_was_told(tmp_path, qp):
    path = tmp_path / "a.heic"
    photo(160, 120).save(path, "HEIF", quality=50, enc_params={"x265:qp": str(qp), "x265:ipratio": "1.0"})
    assert heif_slice_qp(path) == qp


VARIANTS = {  # each changes which SPS / slice header fields exist before the QP
    "without SAO": ("RGB", {}, {"x265:sao": "0"}),
    "4:4:4 chroma": ("RGB", {"chroma": 444}, {}),
    "greyscale (4:0:0: no SAO chroma flag)": ("L", {}, {}),
    "with the default scaling lists": ("RGB", {}, {"x265:scaling-list": "default"}),
    "in four slices": ("RGB", {}, {"x265:slices": "4"}),
    "with a conformance window (an odd size)": ("RGB", {}, {}),
}


def _scaling_list_file(folder) -> str:
    """Custom quantization matrices in x265's (HM's) text format: the SPS then carries them in full."""
    rng, lines = np.random.default_rng(5), []
    for size in (4, 8, 16, 32):
        for kind in ("INTRA", "INTER"):
            for component in ("LUMA", "CHROMAU", "CHROMAV"):
                name, side = f"{kind}{size}X{size}_{component}", min(size, 8)
                lines.append(f"{name} =")
                lines += [",".join(str(v) for v in rng.integers(8, 61, side)) + "," for _ in range(side)]
                if size >= 16:
                    lines += [f"{name}_DC =", str(rng.integers(8, 61))]
    path = folder / "scaling.txt"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize("variant", sorted([*VARIANTS, "with custom scaling lists"]))
def test_the_qp_is_read_past_every_optional_field(tmp_path, variant):
    mode, options, params = VARIANTS.get(variant, ("RGB", {}, {"x265:scaling-list": _scaling_list_file(tmp_path)}))
    size = (333, 201) if "odd" in variant else (320, 240)
    path = tmp_path / "a.heic"
    photo(*size).convert(mode).save(path, "HEIF", quality=50, enc_params={"x265:qp": "33", "x265:ipratio": "1.0",
                                                                          **params}, **options)
    assert heif_slice_qp(path) == 33


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


def test_a_sequence_parameter_set_that_disagrees_with_its_record_is_not_trusted(tmp_path):
    """hvcC states the chroma format and bit depth itself: an SPS read otherwise was misread."""
    path = tmp_path / "a.heic"
    photo(160, 120).save(path, "HEIF", quality=50)
    data = path.read_bytes()
    record = data.index(b"hvcC") + 4
    assert data[record + 16] & 3 == 1 and heif_slice_qp(path) is not None  # 4:2:0, read
    (tmp_path / "b.heic").write_bytes(data[:record + 16] + bytes([data[record + 16] ^ 3]) + data[record + 17:])
    assert heif_slice_qp(tmp_path / "b.heic") is None
