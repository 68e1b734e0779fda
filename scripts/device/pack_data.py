"""Copy the training data into ``gpu_data/`` small enough for a lent GPU machine (64 MiB per call, code included).

JPEG folders travel as they are; BMPs as lossless WebP (bit-exact, checked); PNGs as JPEG quality 95 4:4:4,
which suits ``bsd200`` only because its PNGs are decodes of quality-95 JPEGs (re-encoding at that quality nearly
reproduces them; the worst Y-PSNR against the PNG is printed); Set5 as it is, for validation. The records'
file-list digest is over folder/stem, so the copies give the same digest (docs/model.md, "Training").

    .venv/bin/python scripts/device/pack_data.py [--data ../shared/data] [--out gpu_data]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from worker.quality import psnr_y
from worker.training.patches import find_images, refuse_benchmark_images
from worker.training.trainer import CARRIED_NOTE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("gpu_data"))
    args = parser.parse_args()
    # here, against every benchmark set: the copy carries Set5 alone, and bsd200's PNGs travel re-encoded, so the
    # training run on the device can no longer tell a Set14 or BSD68 image among them
    refuse_benchmark_images(find_images([args.data / "train"]), args.data / "benchmark")
    worst = float("inf")
    kinds: dict[str, set[str]] = {"as they are": set(), "lossless WebP": set(), "JPEG": set()}
    for path in sorted((args.data / "train").rglob("*")):
        suffix = path.suffix.lower()
        if not path.is_file() or suffix not in {".jpg", ".jpeg", ".png", ".bmp"}:
            continue
        folder = args.out / "train" / path.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        if suffix in {".jpg", ".jpeg"}:
            shutil.copy(path, folder / path.name)
            kinds["as they are"].add(path.parent.name)
            continue
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        if suffix == ".bmp":
            target = folder / f"{path.stem}.webp"
            rgb.save(target, "WEBP", lossless=True, method=4)
            with Image.open(target) as back:
                if not np.array_equal(np.asarray(back.convert("RGB")), np.asarray(rgb)):
                    raise SystemExit(f"lossless WebP of {path} is not bit-exact")
            kinds["lossless WebP"].add(path.parent.name)
        else:
            target = folder / f"{path.stem}.jpg"
            rgb.save(target, "JPEG", quality=95, subsampling=0)
            with Image.open(target) as back:
                worst = min(worst, psnr_y(np.asarray(rgb), np.asarray(back.convert("RGB")), shave=0))
            kinds["JPEG"].add(path.parent.name)
    shutil.copytree(args.data / "benchmark" / "set5", args.out / "benchmark" / "set5", dirs_exist_ok=True)
    (args.out / CARRIED_NOTE).write_text(json.dumps({"carried_as": describe(kinds, worst)}, indent=2) + "\n")
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{args.out}: {size / 2**20:.1f} MiB; worst Y-PSNR of a PNG's copy {worst:.1f} dB")


def describe(kinds: dict[str, set[str]], worst: float) -> str:
    """What the copies are, for the run's records (``CARRIED_NOTE``): folder by folder, from what was done."""
    said = {"as they are": "JPEGs as they are", "lossless WebP": "BMPs as lossless WebP (bit-exact)",
            "JPEG": f"PNGs as JPEG quality 95 4:4:4 (Y-PSNR >= {worst:.1f} dB against the PNGs)"}
    parts = [f"{', '.join(sorted(folders))}: {said[kind]}" for kind, folders in kinds.items() if folders]
    return f"copies made to fit the GPU machine's 64 MiB transfer: {'; '.join(parts)}"


if __name__ == "__main__":
    main()
