"""Copy the training data into ``gpu_data/`` small enough for a lent GPU machine (64 MiB per call, code included).

JPEG folders travel as they are; BMPs as lossless WebP (bit-exact, checked); PNGs as JPEG quality 95 4:4:4,
which suits ``bsd200`` only because its PNGs are decodes of quality-95 JPEGs (re-encoding at that quality nearly
reproduces them; the worst Y-PSNR against the PNG is printed); Set5 as it is, for validation. The records'
file-list digest is over folder/stem, so the copies give the same digest (docs/model.md, "Training").

    .venv/bin/python scripts/device/pack_data.py [--data ../shared/data] [--out gpu_data]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from worker.quality import psnr_y
from worker.training.patches import find_images, refuse_benchmark_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("gpu_data"))
    args = parser.parse_args()
    # here, against every benchmark set: the copy carries Set5 alone, and bsd200's PNGs travel re-encoded, so the
    # training run on the device can no longer tell a Set14 or BSD68 image among them
    refuse_benchmark_images(find_images([args.data / "train"]), args.data / "benchmark")
    worst = float("inf")
    for path in sorted((args.data / "train").rglob("*")):
        suffix = path.suffix.lower()
        if not path.is_file() or suffix not in {".jpg", ".jpeg", ".png", ".bmp"}:
            continue
        folder = args.out / "train" / path.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        if suffix in {".jpg", ".jpeg"}:
            shutil.copy(path, folder / path.name)
            continue
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        if suffix == ".bmp":
            target = folder / f"{path.stem}.webp"
            rgb.save(target, "WEBP", lossless=True, method=4)
            with Image.open(target) as back:
                if not np.array_equal(np.asarray(back.convert("RGB")), np.asarray(rgb)):
                    raise SystemExit(f"lossless WebP of {path} is not bit-exact")
        else:
            target = folder / f"{path.stem}.jpg"
            rgb.save(target, "JPEG", quality=95, subsampling=0)
            with Image.open(target) as back:
                worst = min(worst, psnr_y(np.asarray(rgb), np.asarray(back.convert("RGB")), shave=0))
    shutil.copytree(args.data / "benchmark" / "set5", args.out / "benchmark" / "set5", dirs_exist_ok=True)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{args.out}: {size / 2**20:.1f} MiB; worst Y-PSNR of a PNG's copy {worst:.1f} dB")


if __name__ == "__main__":
    main()
