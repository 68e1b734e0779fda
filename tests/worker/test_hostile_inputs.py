"""A corpus of hostile and odd files, each ending in its documented code, early where possible.

Every file goes through the API's submit (content sniffing, size checks) and, if accepted, through the
worker's pipeline in-process. No failure may be an ``internal_error`` or carry raw exception text.
"""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from shared.models import Job
from tests.conftest import image_bytes
from worker import pipeline
from worker.evaluation import register_heif_writer


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_header_png() -> bytes:
    """A 100-byte PNG whose header declares 100000 x 100000 pixels (a decompression bomb's shape)."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        _png_chunk(b"IEND", b"")


def saved(fmt: str, size=(48, 36), **options) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(image_bytes(*size))).save(buffer, fmt, **options)
    return buffer.getvalue()


def phone(fmt: str, size=(64, 48)) -> bytes:
    """An iPhone-style HEIF (HEVC) or a web AVIF, as their encoders write them."""
    register_heif_writer()  # pillow-heif (the dev extra) writes HEIC files
    return saved(fmt, size, quality=60)


def mpo() -> bytes:
    buffer = io.BytesIO()
    first = Image.open(io.BytesIO(image_bytes(40, 30)))
    first.save(buffer, "MPO", save_all=True, append_images=[Image.new("RGB", (40, 30), "blue")])
    return buffer.getvalue()


# (name, bytes, expected): expected is ("submit", status, code) or ("job", status, code-or-None)
CORPUS = [
    ("tiny 1x1 png", saved("PNG", (1, 1)), ("job", "succeeded", None)),
    ("tiny 31x17 jpeg", saved("JPEG", (31, 17)), ("job", "succeeded", None)),
    ("camera mpo", mpo(), ("job", "succeeded", None)),
    ("png with a zip appended (polyglot)", saved("PNG") + b"PK\x03\x04" + b"\0" * 64, ("job", "succeeded", None)),
    ("html named png", b"<html><script>alert(1)</script></html>", ("submit", 415, "unsupported_image")),
    ("empty gif header", b"GIF89a", ("submit", 415, "unsupported_image")),
    ("huge-header png", huge_header_png(), ("submit", 422, "image_too_large")),
    ("png cut after its header", saved("PNG")[:60], ("submit", 415, "unsupported_image")),
    ("png cut mid-data", saved("PNG", (64, 64))[:-200], ("submit", 415, "unsupported_image")),
    ("jpeg cut mid-scan", saved("JPEG", (64, 64), quality=95)[:400], ("submit", 415, "unsupported_image")),
    ("webp cut mid-data", saved("WEBP", (64, 64), quality=80)[:-100], ("submit", 415, "unsupported_image")),
    # whole but their last marker (some cameras, interrupted copies): taken and made, as viewers show them
    ("jpeg without its end marker", saved("JPEG", (64, 64), quality=95)[:-2], ("job", "succeeded", None)),
    ("png without its IEND", saved("PNG", (64, 64))[:-12], ("job", "succeeded", None)),
    ("jpeg cut mid-scan past its headers", saved("JPEG", (64, 64), quality=95)[:-300],
     ("job", "failed", "input_unreadable")),
    ("heic photo", phone("HEIF"), ("job", "succeeded", None)),
    ("avif photo", phone("AVIF"), ("job", "succeeded", None)),
    ("heic cut mid-data", phone("HEIF")[:-100], ("job", "failed", "input_unreadable")),
    ("avif cut mid-data", phone("AVIF")[:-100], ("job", "failed", "input_unreadable")),
    ("tiff cut mid-strip", saved("TIFF", (64, 64))[:-3000], ("job", "failed", "input_unreadable")),
    ("gif cut mid-data", saved("GIF", (64, 64))[:-300], ("job", "failed", "input_unreadable")),
]


@pytest.mark.parametrize("name,data,expected", CORPUS, ids=[c[0] for c in CORPUS])
def test_hostile_file_ends_in_its_documented_code(client, ctx, db_session, name, data, expected):
    response = client.post("/v1/jobs", data={"image": (io.BytesIO(data), "upload.png"), "scale": "2"},
                           content_type="multipart/form-data")
    stage, status, code = expected
    body = response.get_json()
    if stage == "submit":
        assert (response.status_code, body["code"]) == (status, code), body
        return
    assert response.status_code == 202, body
    pipeline.run_job(ctx, body["id"])
    job = db_session.get(Job, body["id"])
    assert (job.status, job.error_code) == (status, code), job.error_message
    if job.error_message:
        assert "Error" not in job.error_message and "(" not in job.error_message  # plain words, no exception


def test_a_jpeg_without_its_end_marker_decodes_to_the_whole_files_pixels(tmp_path):
    """Pillow called it truncated and the job failed input_unreadable, though every pixel was there."""
    import numpy as np

    from worker.imaging import decode

    whole = saved("JPEG", (64, 64), quality=95)
    (tmp_path / "whole.jpg").write_bytes(whole)
    (tmp_path / "cut.jpg").write_bytes(whole[:-2])
    assert np.array_equal(decode(tmp_path / "cut.jpg").rgb, decode(tmp_path / "whole.jpg").rgb)
    # nothing written beside the input (for `upscaler upscale`, the user's own photo folder)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cut.jpg", "whole.jpg"]
