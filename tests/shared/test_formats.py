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
