"""What made each result the many-file commands (``upscale ... OUTDIR``, ``submit --wait``) wrote into a folder, so a
rerun skips a result only when this input, with these options, made it.

Why: a result was skipped by its name alone. ``upscale card1 out`` then ``upscale card2 out``, both cards holding an
IMG_0001.jpg, skipped card2's photo and exited 0; a rerun with another ``--scale`` kept every result of the old one.
The record is ``FOLDER/.upscaler-results.jsonl``, one JSON line appended per result once it is in place: one write
of a few hundred bytes whatever the number of files (a JSON file rewritten per result grew with the run), runs
appending at once lose none of each other's lines, a line cut short by a crash is ignored, and a name's later line
wins over its earlier ones.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

RECORD = ".upscaler-results.jsonl"


class Records:
    """The records of the folders one run writes into, for that run's options (those that shape a result: not,
    say, a webhook URL). Each folder's record is read once, when its results are sorted out."""

    def __init__(self, options: dict[str, object]):
        self.options = _plain(options)
        self._read: dict[Path, dict[str, dict]] = {}

    def sort_out(self, targets: dict[Path, Path], overwrite: bool = False) -> tuple[list[Path], int]:
        """The inputs of ``targets`` (input -> its result's path) whose results are to be made, and how many were
        refused. A result that exists is skipped when this input, unchanged, made it with these options (an
        interrupted run goes on), and also when nothing records what made it (a result of a version that kept no
        record, a file of the user's own: as before, never replaced unasked), saying so; one that another input or
        other options made is refused in an error line naming the clash and the ways out, while the others go on.
        ``overwrite`` makes them all."""
        todo: list[Path] = []
        refused = 0
        for source, target in targets.items():
            if overwrite or not target.exists() or not source.is_file():  # a missing input is said as its error
                todo.append(source)
                continue
            made = self._folder(target.parent).get(target.name)
            if made is None:
                print(f"skip {source}: {target} exists (no record of what made it; --overwrite replaces it)")
            elif (clash := self._clash(made, self._made_by(source))) is None:
                print(f"skip {source}: {target} exists (--overwrite replaces it)")
            else:
                refused += 1
                print(f"error: {source}: {target} exists, {clash}; it is left as it is: name another output folder, "
                      "or --overwrite replaces it", file=sys.stderr)
        return todo, refused

    def record(self, source: Path, result: Path) -> None:
        """Say that ``source`` made ``result`` with this run's options: once ``result`` is in place (a record of a
        result not written could mark another input's result as this one's)."""
        line = json.dumps({"result": result.name, **self._made_by(source)}, sort_keys=True) + "\n"
        descriptor = os.open(result.parent / RECORD, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, line.encode())  # one write: appenders at once never interleave
        finally:
            os.close(descriptor)

    def _made_by(self, source: Path) -> dict:
        """What makes a result this input's: the input (where it is, and its size and time, which change when it
        is edited) and the options."""
        stat = source.stat()
        return {"input": str(source.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "options": self.options}

    def _folder(self, folder: Path) -> dict[str, dict]:
        """``folder``'s record: result name -> what made it, the latest line of each name."""
        if folder not in self._read:
            made: dict[str, dict] = {}
            path = folder / RECORD
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines() if path.is_file() else []
            for line in lines:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a crash
                if isinstance(entry, dict) and isinstance(entry.get("result"), str):
                    made[entry["result"]] = entry
            self._read[folder] = made
        return self._read[folder]

    @staticmethod
    def _clash(made: dict, now: dict) -> str | None:
        """In words, why the result ``made`` is not what ``now`` would make; None when it is."""
        if made.get("input") != now["input"]:
            return f"made from {made.get('input')}"
        if (made.get("size"), made.get("mtime_ns")) != (now["size"], now["mtime_ns"]):
            return "made from this file before it changed"
        before = made.get("options") if isinstance(made.get("options"), dict) else {}
        changed = [f"{name} {_shown(before.get(name))} (now {_shown(now['options'].get(name))})"
                   for name in sorted(set(before) | set(now["options"]))
                   if before.get(name) != now["options"].get(name)]
        return f"made with {', '.join(changed)}" if changed else None


def _plain(options: dict[str, object]) -> dict:
    """The options as the record holds them (read back from JSON they compare equal): those given, not the unset
    ones, so an option added later leaves the records written before it matching."""
    return json.loads(json.dumps({name: value for name, value in options.items() if value is not None},
                                 sort_keys=True, default=str))


def _shown(value: object) -> str:
    return "unset" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
