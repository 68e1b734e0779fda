"""Scratch folders and state files of processes that are gone are removed by the next one to start."""

import os
import shutil
import subprocess
import sys
import tempfile

from cli.records import RECORD
from worker import scratch as scratch_module
from worker.scratch import remove_orphaned, scratch, scratch_name


def test_the_folders_of_gone_processes_are_removed_and_no_others(tmp_path, monkeypatch):
    """A worker killed mid-job left its input (and a split job's row file, 3 bytes per output pixel) in the
    temporary folder for good, and every launch its metrics folders and beat schedule. A process id taken again
    by a later process (a container restarted over the same temporary folder) does not keep a folder alive."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead_pid = int(gone.stdout)
    killed = tmp_path / f"upscaler-{dead_pid}.77-assemble-abc"
    (killed / "sub").mkdir(parents=True)
    (killed / "sub" / "rows.tif").write_bytes(b"x" * 1000)
    schedule = tmp_path / f"upscaler-{dead_pid}.123-beat.db"  # a launcher's state file (a beat that was stopped)
    schedule.write_bytes(b"shelve")
    reused = tmp_path / f"upscaler-{os.getpid()}.1-job-old"  # this pid, but another process's start time
    reused.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # TMPDIR read again
    mine = scratch_name("beat")
    open(mine, "wb").close()
    # a user's own folders, named like ours: "upscaler-<digits>-" alone removed the first, photos and all
    others = [tmp_path / "upscaler-2024-11-holiday", tmp_path / f"upscaler-{dead_pid}-job-applications",
              tmp_path / f"upscaler-{dead_pid}.5-notes", tmp_path / "upscaler-eval-xyz", tmp_path / "something-else"]
    for other in others:
        other.mkdir()
    assert remove_orphaned(tmp_path) == 3
    assert not killed.exists() and not schedule.exists() and not reused.exists()
    assert os.path.exists(mine) and all(path.exists() for path in others)
    with scratch("job") as folder:
        assert os.path.basename(folder).startswith(os.path.basename(mine).removesuffix("-beat") + "-job-")
        assert remove_orphaned() == 0  # this process's own folder stays while it works


def test_an_entry_that_cannot_be_removed_is_logged_and_the_rest_go(tmp_path, monkeypatch, caplog):
    """Another user's leftover in a sticky /tmp raised out of every pool process's start (the model preload and
    thread limits after it never ran) and stopped the launchers."""
    dead = [tmp_path / f"upscaler-{pid}.9-job-x" for pid in (2**22 + 11, 2**22 + 12)]  # past any real pid
    for folder in dead:
        folder.mkdir()
    real = shutil.rmtree

    def refuses_the_first(path, *args, **kwargs):
        if str(path) == str(dead[0]):
            raise PermissionError(1, "Operation not permitted", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(scratch_module.shutil, "rmtree", refuses_the_first)
    assert remove_orphaned(tmp_path) == 1
    assert dead[0].exists() and not dead[1].exists()
    assert "could not remove" in caplog.text


def test_a_killed_upscale_leaves_nothing_the_next_run_does_not_remove(tmp_path, monkeypatch):
    """``upscaler upscale`` streams a large output's rows (3 bytes per output pixel) through a folder beside the
    result, and a SIGKILL or the out-of-memory killer left that folder there for good. It is named after its
    process now, and the next run removes those of runs that are gone from its output folder, and nothing else:
    not a live run's, not a photo whose name looks like a worker's scratch folder."""
    from pathlib import Path

    from PIL import Image

    from cli.__main__ import build_parser
    from tests.conftest import write_image
    from worker import render as rendering

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead_pid = int(gone.stdout)
    out = tmp_path / "out"
    out.mkdir()
    left = out / f".upscaler-partial-{dead_pid}-bands-abc"
    left.mkdir()
    (left / "rows.raw").write_bytes(b"x" * 1000)
    photo = write_image(out / f"upscaler-{dead_pid}-trip.png", width=8, height=8)
    made = []

    def watching(path, kind):
        folder = scratch_module.scratch_beside(path, kind)
        made.append(Path(folder.name))
        return folder

    monkeypatch.setattr(rendering, "scratch_beside", watching)
    monkeypatch.setenv("UPSCALER_BAND_OUTPUT_PIXELS", "1000")  # the 80x60 output streams in bands
    source = write_image(tmp_path / "a.png", width=40, height=30)
    args = build_parser().parse_args(["upscale", str(source), str(out), "--scale", "2"])
    assert args.func(args) == 0
    assert sorted(path.name for path in out.iterdir()) == [RECORD, "a.png", photo.name]
    with Image.open(out / "a.png") as result:
        assert result.size == (80, 60)
    assert [folder.parent for folder in made] == [out]
    assert made[0].name.startswith(f"{scratch_module.BESIDE_PREFIX}{scratch_module._owner()}-bands-")


def test_where_no_start_time_can_be_read_the_names_are_still_the_clean_ups(monkeypatch):
    """Without /proc (macOS) the name was ``upscaler-<pid>-job-...``, which the pattern, requiring a start time,
    never matched: a killed worker's folders stayed for good."""
    monkeypatch.setattr(scratch_module, "_start_time", lambda pid: None)
    name = os.path.basename(scratch_name("beat"))
    assert name == f"upscaler-{os.getpid()}.0-beat" and scratch_module._OWNED.match(name)
    assert scratch_module._alive(os.getpid(), "0")
