"""A real multirun through `python -m bench -m`: one result.json per job, a crashed job recorded
while the sweep goes on, and the report built when the sweep ends."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import write_report
from variants import VARIANTS, AttentionVariant

REPO = Path(__file__).resolve().parent.parent

WITH_A_BROKEN_VARIANT = """
from variants import AttentionVariant

class Broken(AttentionVariant):
    name = "broken"

    def forward(self, x, need_weights=False):
        raise RuntimeError("kaboom")

from bench.cli import main
main()
"""


@pytest.mark.slow
def test_sweep_records_every_job_survives_a_crash_and_reports(tmp_path):
    quick = ["+debug=tiny", "train.steps=20", "train.eval_every=10", "train.lr=3e-3"]  # a set rate: no tuning
    completed = subprocess.run(
        [sys.executable, "-c", WITH_A_BROKEN_VARIANT, "-m", "variant=broken,standard", "task=copy,induction",
         "seed=0", *quick, f"hydra.sweep.dir={tmp_path}/sweep"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    records = [json.loads(p.read_text()) for p in (tmp_path / "sweep").glob("*/result.json")]
    records.sort(key=lambda r: (r["variant"], r["task"]))
    assert [(r["variant"], r["task"], r["status"]) for r in records] == [
        ("broken", "copy", "failed"),
        ("broken", "induction", "failed"),
        ("standard", "copy", "completed"),
        ("standard", "induction", "completed"),
    ]
    assert records[0]["error"] == "RuntimeError: kaboom"
    report = tmp_path / "sweep" / "report" / "report.md"
    assert f"report: {report}" in completed.stdout and str(report.with_name("report.html")) in completed.stdout
    assert "test accuracy, mean [95% interval] (n = seeds):" in completed.stdout, "a finished sweep prints its summary"
    logged = completed.stdout + completed.stderr
    assert "job 1 of 4; 0 finished: broken on copy, seed 0" in logged and "job 4 of 4; 3 finished, about" in logged
    assert "RuntimeError: kaboom" in report.read_text()
    assert (tmp_path / "sweep" / "report" / "results.parquet").exists()
    assert "The sweep asked for 4 jobs; 0 have no result yet." in report.read_text()


@pytest.mark.slow
def test_a_partial_sweep_reports_what_is_missing(tmp_path):
    quick = ["+debug=tiny", "train.steps=10", "train.eval_every=10", "train.lr=3e-3"]
    subprocess.run(
        [sys.executable, "-m", "bench", "-m", "variant=standard", "task=copy", "seed=0,1,2", *quick, f"hydra.sweep.dir={tmp_path}/sweep"],
        cwd=tmp_path, capture_output=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True,
    )  # fmt: skip
    lost = next((tmp_path / "sweep").glob("*seed=1*"))
    shutil.rmtree(lost)
    text = write_report(tmp_path / "sweep", tmp_path / "partial").read_text()
    assert "2 runs from 1 sweep: 2 completed." in text and "The sweep asked for 3 jobs; 1 have no result yet." in text
    assert f"| {lost.name} |" in text


@pytest.mark.slow
def test_an_old_sweep_does_not_look_unfinished_after_a_variant_is_added(tmp_path):
    quick = ["+debug=tiny", "train.steps=10", "train.eval_every=10", "task=copy", "seed=0"]
    subprocess.run(
        [sys.executable, "-m", "bench", "-m", "variant=glob(*,exclude=handcoded*)", *quick, f"hydra.sweep.dir={tmp_path}/sweep"],
        cwd=tmp_path, capture_output=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True,
    )  # fmt: skip

    class AddedLater(AttentionVariant):
        name = "added_after_the_sweep"

    try:
        text = write_report(tmp_path / "sweep", tmp_path / "later").read_text()
    finally:
        del VARIANTS["added_after_the_sweep"]
    assert "have no result yet" in text and "0 have no result yet" in text, "the jobs it asked for when it started"


@pytest.mark.slow
def test_a_tuning_sweep_on_parallel_workers_brackets_its_rate_reports_verdicts_and_resumes(tmp_path):
    command = [sys.executable, "-m", "bench", "-m", "+debug=tiny", "variant=standard,positional", "task=copy", "seed=0,1",
               "hydra.sweeper.tune={train.lr:[1e-5,1e-4,1e-3,1e-2]}", "hydra.sweeper.max_extensions=1", "train.steps=60",
               "train.eval_every=20", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={tmp_path}/sweep"]  # fmt: skip
    first = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert first.returncode == 0, first.stderr
    records = [json.loads(p.read_text()) for p in (tmp_path / "sweep").glob("*/result.json")]
    for variant in ("standard", "positional"):
        ran = sorted((r["seed"], r["config"]["train"]["lr"]) for r in records if r["variant"] == variant)
        tuned = [lr for seed, lr in ran if seed == 0]
        assert set(tuned) >= {1e-5, 1e-4, 1e-3, 1e-2} and len(tuned) <= 5, "the grid, and at most one step past an edge"
        (confirmed,) = [lr for seed, lr in ran if seed == 1]
        assert confirmed in tuned
    assert all(r["budget"]["status"] in ("reached target", "converged", "still improving") for r in records)
    assert json.loads((tmp_path / "sweep" / "jobs.json").read_text()).__len__() == len(records)
    report = (tmp_path / "sweep" / "report" / "report.md").read_text()
    assert report.index("## Verdicts") < report.index("## Findings") and "could not be built" not in report
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert again.returncode == 0, again.stderr
    assert (again.stdout + again.stderr).count("already completed") == len(records), "resumed: every job found done, none trained"


def test_the_sweeps_time_left_counts_the_jobs_it_runs_at_once(tmp_path):
    from omegaconf import OmegaConf

    from bench.core.job import jobs_at_once, sweep_progress, threads_per_job
    from bench.core.results import JOBS_FILE, RESULT_FILE

    jobs = [f"seed={seed}" for seed in range(6)]
    (tmp_path / JOBS_FILE).write_text(json.dumps(jobs))
    for job in jobs[:2]:
        (tmp_path / job).mkdir()
        (tmp_path / job / RESULT_FILE).write_text(json.dumps({"status": "completed", "wall_time_s": 60}))
    assert sweep_progress(tmp_path, 2) == "job 3 of 6; 2 finished, about 4 min left (60 s per finished job)"
    assert sweep_progress(tmp_path, 2, at_once=2) == "job 3 of 6; 2 finished, about 2 min left (60 s per finished job, 2 at once)"
    joblib = OmegaConf.create({"n_jobs": 2})
    assert jobs_at_once(joblib) == 2 and jobs_at_once(OmegaConf.create({"n_jobs": -1})) == (os.cpu_count() or 1)
    assert threads_per_job(joblib) == max(1, (os.cpu_count() or 1) // 2)
    assert jobs_at_once(OmegaConf.create({"array_parallelism": 4, "cpus_per_task": 2})) == 4
