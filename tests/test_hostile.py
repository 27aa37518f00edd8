"""Inputs and faults as a hostile user makes them, one table per class: each is refused in one line
with exit code 2 and nothing written, or ends with nothing lost and a report written."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_report import result, write_results

from bench.report.__main__ import main as report_main
from bench.report.build import REPORT_MARK, write_report


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root with its content's hash ('dir' for a directory, the target for a link)."""
    return {
        str(path.relative_to(root)): (f"-> {os.readlink(path)}" if path.is_symlink() else "dir" if path.is_dir()
                                      else hashlib.sha256(path.read_bytes()).hexdigest())
        for path in sorted(root.rglob("*"))
    }  # fmt: skip


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder holding a finished sweep and a file of the user's, as the working directory."""
    write_results(tmp_path / "multirun" / "sweep", {"0": result("standard", "copy", 0, 1.0), "1": result("standard", "copy", 1, 0.9)})
    (tmp_path / "notes.txt").write_text("the user's own file\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "table.csv").write_text("a,b\n1,2\n")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --out values that name something a report did not write: the sweep itself, a folder above it, a
# file, a folder of the user's (even one of CSV files, as a report's are), a link.
UNSAFE_OUTPUTS = [
    ("multirun/sweep", "would replace the sweep"),
    ("multirun", "would replace the sweep"),
    (".", "would replace the sweep"),
    ("notes.txt", "is a file or a link"),
    ("link", "is a file or a link"),
    ("data", "holds files that no report wrote"),
    ("multirun/sweep/0", "holds files that no report wrote"),
    ("notes.txt/report", "cannot write beside it (Not a directory"),
]


@pytest.mark.parametrize(("out", "message"), UNSAFE_OUTPUTS, ids=[out for out, _ in UNSAFE_OUTPUTS])
def test_a_report_refuses_to_replace_what_it_did_not_write(project, capsys, out, message):
    before = snapshot(project)
    with pytest.raises(SystemExit) as exited:
        report_main(["multirun/sweep", "--out", out])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert exited.value.code == 2 and message in error, error
    assert snapshot(project) == before, "nothing written, nothing removed"


def test_a_report_replaces_an_empty_folder_its_own_earlier_report_and_one_from_before_the_mark(project):
    (project / "empty").mkdir()
    for out in ("empty", "fresh", "fresh"):  # the second "fresh" replaces the report the first wrote
        report_main(["multirun/sweep", "--out", out])
        assert (project / out / "report.md").is_file() and (project / out / REPORT_MARK).is_file()
    (project / "fresh" / REPORT_MARK).unlink()  # a report written before reports were marked
    report_main(["multirun/sweep", "--out", "fresh"])
    assert (project / "fresh" / REPORT_MARK).is_file()


def test_a_build_leaves_a_running_builds_staging_and_clears_an_ended_ones(project):
    out = project / "out"
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    try:
        live, dead = (out.with_name(f".out.{pid}.tmp") for pid in (running.pid, ended))
        for staging in (live, dead):
            (staging / "figures").mkdir(parents=True)
        time.sleep(0.1)
        write_report(project / "multirun" / "sweep", out)
        assert live.is_dir() and not dead.exists()
    finally:
        running.kill()
