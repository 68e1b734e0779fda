"""What the AVIF and HEIC header readers cannot read is unknown (None), never an error: the caller falls back to a
prior. Broken containers, the other codec in the same container, and files of other formats."""

import pytest

from tests.images import photo
from worker.avif_header import av1_base_q_idx, avif_base_q_idx
from worker.evaluation import register_heif_writer
from worker.heif_header import heif_slice_qp

READERS = {"AVIF": (avif_base_q_idx, b"meta", "HEIF"), "HEIF": (heif_slice_qp, b"hvcC", "AVIF")}


@pytest.mark.parametrize("fmt", sorted(READERS))
def test_what_cannot_be_read_is_unknown(tmp_path, fmt):
    register_heif_writer()  # pillow-heif (the dev extra) writes HEIC files
    read, key_box, other = READERS[fmt]
    photo(160, 120).save(tmp_path / "a", fmt, quality=50)
    data = (tmp_path / "a").read_bytes()
    assert read(tmp_path / "a") is not None
    for name, broken in (("cut in its meta box", data[:80]), ("without its key box", data.replace(key_box, b"xxxx")),
                         ("zeros", b"\0" * 64)):
        (tmp_path / name).write_bytes(broken)
        assert read(tmp_path / name) is None, name
    photo(160, 120).save(tmp_path / "other", other, quality=50)  # the same container, the other codec
    photo(160, 120).save(tmp_path / "photo.png")
    assert read(tmp_path / "other") is None and read(tmp_path / "photo.png") is None


def test_a_sequence_header_cut_short_is_unknown():
    assert av1_base_q_idx(b"\x0a\x05\x00\x00") is None
