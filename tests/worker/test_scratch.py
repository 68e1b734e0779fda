"""Scratch folders and state files of processes that are gone are removed by the next one to start."""

import os
import subprocess
import sys
import tempfile

from worker.scratch import remove_orphaned, scratch, scratch_name


def test_the_folders_of_gone_processes_are_removed_and_no_others(tmp_path, monkeypatch):
    """A worker killed mid-job left its input (and a split job's row file, 3 bytes per output pixel) in the
    temporary folder for good."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead_pid = int(gone.stdout)
    killed = tmp_path / f"upscaler-{dead_pid}-assemble-abc"
    (killed / "sub").mkdir(parents=True)
    (killed / "sub" / "rows.tif").write_bytes(b"x" * 1000)
    mine = tmp_path / f"upscaler-{os.getpid()}-job-def"
    mine.mkdir()
    schedule = tmp_path / f"upscaler-{dead_pid}-beat.db"  # a launcher's state file (a beat that was stopped)
    schedule.write_bytes(b"shelve")
    others = [tmp_path / "upscaler-eval-xyz", tmp_path / "something-else", tmp_path / f"upscaler-{os.getpid()}-beat"]
    others[0].mkdir()
    others[1].mkdir()
    others[2].write_bytes(b"this process's own")
    assert remove_orphaned(tmp_path) == 2
    assert not killed.exists() and not schedule.exists()
    assert mine.exists() and all(path.exists() for path in others)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # TMPDIR read again
    with scratch("job") as folder:
        assert os.path.basename(folder).startswith(f"upscaler-{os.getpid()}-job-")
        assert remove_orphaned() == 0  # this process's own folder stays while it works
    assert scratch_name("metrics-api") == str(tmp_path / f"upscaler-{os.getpid()}-metrics-api")
