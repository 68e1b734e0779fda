"""The many-file commands (``upscale`` and ``submit``): which files they work on, where each one's result goes,
and how their progress is shown."""

from __future__ import annotations

import glob
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from cli.arguments import UsageError
from shared.formats import is_image_name
from shared.limits import SUFFIX_FORMATS


def expand(paths: list[Path], results: Path | None = None) -> list[Path]:
    """Files, the images of folders, and globs (for shells that do not expand them), in a stable order.

    A path that does not exist stays in the list: it is reported as that file's error while the others go on.
    Files a folder or a pattern finds in ``results``, the output folder, are left out: they are this command's
    earlier results (a rerun of ``upscale photos photos --format jpeg`` upscaled them again, or refused the batch
    for names that clashed). A file named on its own always goes (``upscale a.jpg b.jpg .``): where its result
    would clash, ``result_names`` says so. Raises ``FileNotFoundError`` when nothing is left, naming the
    sub-folders not looked into."""
    out = results.resolve() if results is not None else None
    found: list[Path] = []
    sub_folders: list[Path] = []
    left_out = False
    for item in paths:
        # as written when it exists: "photo[1].png" is a file's name, not a pattern matching photo1.png
        named = Path(item).exists()
        matches = [Path(item)] if named else [Path(m) for m in sorted(glob.glob(str(item)))] or [Path(item)]
        for path in matches:
            if path.is_dir():
                inside = sorted(path.iterdir())
                images = [p for p in inside if is_image_name(p.name) and p.is_file()]
                if path.resolve() == out:
                    left_out |= bool(images)
                else:
                    found += images
                sub_folders += [p for p in inside if p.is_dir() and not p.name.startswith(".")]
            elif named or not path.exists() or path.parent.resolve() != out:
                found.append(path)
            else:
                left_out = True
    if not found:
        output = (f" outside the output folder {results} (what is in it is taken for earlier results: name another "
                  "output folder)") if left_out else ""
        skipped = f"; sub-folders are not looked into: {', '.join(map(str, sub_folders))}" if sub_folders else ""
        raise FileNotFoundError(f"no images in {', '.join(map(str, paths))}{output}{skipped}")
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
        raise UsageError(f"these inputs would write the same result file: {listed} (run them separately)")
    targets = {path: folder / f"{name}.{extension}" for path, name in names.items()}
    refuse_overwriting_inputs(targets)
    return targets


def refuse_overwriting_inputs(targets: dict[Path, Path]) -> None:
    """No result may be written over an input (``upscale photos photos`` replaced every PNG with its upscale) or
    onto a folder; ``submit`` also took such a target for a result already there and skipped the file."""
    inputs = {path.resolve() for path in targets}
    for path, target in targets.items():
        if target.resolve() in inputs:
            raise UsageError(f"the result of {path} would overwrite the input {target}: choose another output "
                             "folder or name")
        if target.is_dir():
            raise UsageError(f"the result of {path} would be written onto the folder {target}: name a file")


def writable_folders(targets: Iterable[Path]) -> None:
    """Make the folders ``targets`` go into and check that a file can be created in each, before any work: one that
    could not be written (``--output-dir /proc/x``, a read-only disk) was found once a job had been uploaded, run
    and charged, or once the inference was done. Raises ``UsageError`` naming the folder and why."""
    for folder in sorted({target.parent for target in targets}):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".upscaler-probe-"):
                pass  # removed as it closes
        except OSError as exc:  # a file where the folder goes: mkdir's own word for it was "File exists"
            why = "it is a file, not a folder" if folder.is_file() else exc.strerror or exc
            raise UsageError(f"cannot write into {folder}: {why}; name another output") from None


def output_format_for(path: Path, explicit: str | None) -> str:
    """The format written to ``path``: ``--format``, else its suffix's; an image suffix we cannot write is
    refused (``out.gif`` would silently be a PNG), as is a suffix that contradicts ``--format`` (``--format png``
    into ``big.jpg`` wrote PNG data under a JPEG name)."""
    implied = SUFFIX_FORMATS.get(path.suffix.lower())
    if explicit and implied and explicit != implied:
        raise UsageError(f"{path} names a {implied} file but --format is {explicit}")
    if explicit or implied:
        return explicit or implied
    raise UsageError(f"cannot write {path.suffix or 'suffix-less'} files; name the output "
                     f"{' / '.join(sorted(SUFFIX_FORMATS))}, or give --format")


def progress_bar(**options):
    """A tqdm bar on a terminal; none where stderr goes to a log or a pipe, whose file its \\r redraws filled with
    every frame: there the line each command writes per file is the progress, as ``upscaler dev`` prints a line
    per change. ``tqdm.write`` prints either way."""
    from tqdm import tqdm

    return tqdm(**options, disable=not sys.stderr.isatty())
