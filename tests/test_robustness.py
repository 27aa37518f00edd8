"""Sweeps that survive bad files and bad directories, one test per class of hole: result files
that are not a JSON object, damaged tensor files, names with path separators, job directories
that cannot hold a record, a report killed while written, values JSON cannot hold; and a real
sweep with several faults at once."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.analyze import main as analyze
from bench.core.job import run
from bench.core.measure import ANALYSIS_DIR, WEIGHTS_FILE
from bench.core.results import UNSTARTABLE_FILE, write_json_atomic
from bench.report.build import write_report
from bench.report.records import load_results
from test_report import result, write_results

REPO = Path(__file__).resolve().parent.parent
QUICK = ("+debug=tiny", "train.steps=10", "train.eval_every=10", "train.lr=3e-3", "analysis.length_generalisation.factors=[1]")


@pytest.mark.parametrize("content", ["[1, 2, 3]", '"a string"', "42", "null", '{"status": "compl'])
def test_a_result_file_that_is_not_a_json_object_is_no_result(make_config, tmp_path, content):
    (tmp_path / "result.json").write_text(content)
    record = run(make_config(*QUICK), tmp_path, single_run=False, overrides=[])
    assert record["status"] == "completed" and json.loads((tmp_path / "result.json").read_text())["status"] == "completed"
    (tmp_path / "result.json").write_text(content)
    runs = load_results(tmp_path.parent).runs
    assert runs.set_index("run").loc[tmp_path.name, "status"] == "unreadable"


def test_damaged_weights_and_tensors_are_named_and_skipped(make_config, tmp_path, capsys):
    job = tmp_path / "sweep" / "job"
    run(make_config(*QUICK), job, single_run=False, overrides=[])
    (job / WEIGHTS_FILE).write_bytes(b"not safetensors")
    (job / ANALYSIS_DIR / "attention_example.safetensors").write_bytes(b"\x00\x01garbage")
    analyze([str(tmp_path / "sweep"), "--no-report"])
    assert "job: cannot be rebuilt from its record and weights" in capsys.readouterr().err
    text = write_report(tmp_path / "sweep", tmp_path / "out").read_text()
    assert "## Attention patterns" in text and "attention of one test sequence" not in text, "the damaged figure is left out"


def test_a_variant_name_with_path_separators_stays_inside_the_report(make_config, tmp_path):
    job = tmp_path / "sweep" / "job"
    record = run(make_config(*QUICK), job, single_run=False, overrides=[])
    write_json_atomic(job / "result.json", {**record, "variant": "../../evil/name"})
    out = tmp_path / "out"
    text = write_report(tmp_path / "sweep", out).read_text()
    assert "../../evil/name" in text
    written = [path.resolve() for path in tmp_path.rglob("*") if path.is_file()]
    assert all(path.is_relative_to(tmp_path / "sweep") or path.is_relative_to(out) for path in written)


def test_a_job_that_cannot_write_its_record_is_named_in_the_sweep_and_its_report(make_config, tmp_path):
    job = tmp_path / "sweep" / "job"
    (job / "result.json").mkdir(parents=True)  # a directory where the record should go: no write can succeed
    record = run(make_config(*QUICK), job, single_run=False, overrides=["seed=0"])
    assert record["status"] == "failed" and "could not write into its directory" in record["error"]
    entries = json.loads((tmp_path / "sweep" / UNSTARTABLE_FILE).read_text())
    assert entries[0]["job"] == "job" and entries[0]["overrides"] == ["seed=0"]
    shutil.rmtree(job / "result.json")
    (job / "result.json").write_text("[]")  # still no record of its own: the sweep's file names it
    assert "could not start in its directory" not in write_report(tmp_path / "sweep", tmp_path / "out").read_text()
    (job / "result.json").unlink()
    assert "could not start in its directory: IsADirectoryError" in write_report(tmp_path / "sweep", tmp_path / "out").read_text()


def test_a_report_killed_while_written_leaves_the_previous_one_whole_and_nothing_behind(tmp_path, monkeypatch):
    sweep = write_results(tmp_path / "sweep", [result("standard", "copy", 0, 0.9)])
    first = write_report(sweep, tmp_path / "out").read_text()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("bench.report.build.markdown", killed)
    with pytest.raises(KeyboardInterrupt):
        write_report(sweep, tmp_path / "out")
    assert (tmp_path / "out" / "report.md").read_text() == first and not list(tmp_path.glob(".out.*"))
    (tmp_path / ".out.12345.tmp").mkdir()  # left by a process killed outright
    monkeypatch.undo()
    write_report(sweep, tmp_path / "out")
    assert not list(tmp_path.glob(".out.*")), "stale temporaries removed"


def test_the_overview_counts_rows_without_a_status_and_a_shared_config_is_not_missing(tmp_path):
    sweep = write_results(tmp_path / "sweep", {"a": result("standard", "copy", 0, 0.9), "b": result("standard", "copy", 0, 0.9), "c": {"variant": "x"}})
    (sweep / "jobs.json").write_text(json.dumps(["a", "b", "c"]))
    text = write_report(sweep, tmp_path / "out").read_text()
    assert "2 runs from 1 sweep: 1 completed, 1 no status." in text, "b repeats a's config: counted once"
    assert "asked for 3 jobs; 0 have no result yet" in text


def test_result_files_hold_no_bare_nan(tmp_path):
    write_json_atomic(tmp_path / "r.json", {"score": math.nan, "nested": [math.inf, 1.0]})
    assert json.loads((tmp_path / "r.json").read_text(), parse_constant=lambda name: pytest.fail(f"bare {name}")) == {"score": None, "nested": [None, 1.0]}


@pytest.mark.slow
def test_a_sweep_with_an_unreadable_result_a_blocked_directory_and_a_half_written_job_completes_the_rest(tmp_path):
    sweep_dir = tmp_path / "sweep"
    overrides = ["variant=standard", *QUICK, "task=copy", "seed=0,1,2,3"]
    names = {seed: f"+debug=tiny,analysis.length_generalisation.factors=[1],seed={seed},task=copy,train.eval_every=10,train.lr=0.003,train.steps=10,variant=standard" for seed in range(4)}
    (sweep_dir / names[0]).mkdir(parents=True)
    (sweep_dir / names[0] / "result.json").write_text('["not", "a", "record"]')  # unreadable
    (sweep_dir / names[1]).write_text("a file where the job's directory should be")  # blocked
    (sweep_dir / names[2]).mkdir()
    (sweep_dir / names[2] / ".result.json.999999.tmp").write_text('{"status": "compl')  # killed mid-write
    (sweep_dir / names[2] / "result.json").write_text(json.dumps({"status": "running", "variant": "standard", "task": "copy", "seed": 2, "pid": 999999}))
    command = [sys.executable, "-m", "bench", "-m", *overrides, f"hydra.sweep.dir={sweep_dir}"]
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    completed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=environment)
    assert completed.returncode == 0, completed.stderr
    statuses = {seed: json.loads((sweep_dir / name / "result.json").read_text())["status"] for seed, name in names.items() if seed != 1}
    assert statuses == {0: "completed", 2: "completed", 3: "completed"}, "repaired on the way, and the rest ran"
    assert not list((sweep_dir / names[2]).glob(".*.tmp"))
    report = (sweep_dir / "report" / "report.md").read_text()
    assert "could not start in its directory: FileExistsError" in report and "4 runs from 1 sweep: 3 completed, 1 failed." in report
    (sweep_dir / names[1]).unlink()  # the user clears the blocked path; a re-run repairs the rest
    subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=environment, check=True)
    assert json.loads((sweep_dir / names[1] / "result.json").read_text())["status"] == "completed"
    assert "4 runs from 1 sweep: 4 completed." in (sweep_dir / "report" / "report.md").read_text()
