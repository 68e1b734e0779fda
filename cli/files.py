"""Which files a many-file command works on, and where each one's result goes (``upscale`` and ``submit``)."""

from __future__ import annotations

import glob
from collections import defaultdict
from pathlib import Path

from shared.formats import INPUT_SUFFIXES
from shared.limits import SUFFIX_FORMATS


def expand(paths: list[Path]) -> list[Path]:
    """Files, the images of folders, and globs (for shells that do not expand them), in a stable order.

    A path that does not exist stays in the list: it is reported as that file's error while the others go on."""
    found: list[Path] = []
    for item in paths:
        # as written when it exists: "photo[1].png" is a file's name, not a pattern matching photo1.png
        matches = [Path(item)] if Path(item).exists() else [Path(m) for m in sorted(glob.glob(str(item)))] or [
            Path(item)]
        for path in matches:
            if path.is_dir():
                found += sorted(p for p in path.iterdir() if p.suffix.lower() in INPUT_SUFFIXES and p.is_file())
            else:
                found.append(path)
    return list(dict.fromkeys(found))


def result_names(files: list[Path], folder: Path, extension: str) -> dict[Path, Path]:
    """``folder/<stem>.<extension>`` for each input; inputs sharing a stem (photo.jpg and photo.png) get
    ``<stem>_<suffix>`` instead, so no result overwrites another. Same-named files of different folders cannot
    be told apart that way: refused before anything runs, naming them."""
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for path in files:
        by_stem[path.stem].append(path)
    names = {path: f"{path.stem}_{path.suffix.lstrip('.').lower()}" if len(by_stem[path.stem]) > 1 else path.stem
             for path in files}
    taken: dict[str, list[Path]] = defaultdict(list)
    for path, name in names.items():
        taken[name].append(path)
    clashes = [paths for paths in taken.values() if len(paths) > 1]
    if clashes:
        listed = "; ".join(", ".join(str(p) for p in paths) for paths in clashes)
        raise SystemExit(f"these inputs would write the same result file: {listed} (run them separately)")
    targets = {path: folder / f"{name}.{extension}" for path, name in names.items()}
    refuse_overwriting_inputs(targets)
    return targets


def refuse_overwriting_inputs(targets: dict[Path, Path]) -> None:
    """No result may be written over an input (``upscale photos photos`` replaced every PNG with its upscale) or
    onto a folder; ``submit`` also took such a target for a result already there and skipped the file."""
    inputs = {path.resolve() for path in targets}
    for path, target in targets.items():
        if target.resolve() in inputs:
            raise SystemExit(f"the result of {path} would overwrite the input {target}: choose another output "
                             "folder or name")
        if target.is_dir():
            raise SystemExit(f"the result of {path} would be written onto the folder {target}: name a file")


def output_format_for(path: Path, explicit: str | None) -> str:
    """The format written to ``path``: ``--format``, else its suffix's; an image suffix we cannot write is
    refused (``out.gif`` would silently be a PNG), as is a suffix that contradicts ``--format`` (``--format png``
    into ``big.jpg`` wrote PNG data under a JPEG name)."""
    implied = SUFFIX_FORMATS.get(path.suffix.lower())
    if explicit and implied and explicit != implied:
        raise SystemExit(f"{path} names a {implied} file but --format is {explicit}")
    if explicit or implied:
        return explicit or implied
    raise SystemExit(f"cannot write {path.suffix or 'suffix-less'} files; name the output "
                     f"{' / '.join(sorted(SUFFIX_FORMATS))}, or give --format")
