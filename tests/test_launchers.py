"""Real sweeps through `python -m bench -m` in a subprocess: killed and resumed, run two jobs at
a time with joblib, and through submitit (the SLURM code path) on this machine; a progress bar
where jobs run in the launching process, none in workers; the default launcher on Hydra's public
API."""
from __future__ import annotations

import ast
import inspect
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import hydra_plugins.bench_launcher.surviving_launcher as surviving_launcher
from bench import CONF_DIR, CONFIG_NAME
import bench.core.job
from bench.core.job import mark_launching_process, runs_in_launching_process
from bench.report.records import load_results

REPO = Path(__file__).resolve().parent.parent
QUICK = ["variant=standard", "+debug=tiny", "train.eval_every=10", "train.lr=3e-3"]  # a set rate: one job per seed, untuned
PROGRESS_BAR = re.compile(r"copy: +\d+%\|")  # tqdm's bar for the task copy


def sweep_command(sweep_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "bench", "-m", *QUICK, *overrides, f"hydra.sweep.dir={sweep_dir}"]


def run_sweep(tmp_path: Path, sweep_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    completed = subprocess.run(
        sweep_command(sweep_dir, *overrides), cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    return completed


def records(sweep_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.rglob("result.json")}


@pytest.mark.slow
def test_a_sweep_killed_part_way_completes_when_run_again(tmp_path):
    sweep_dir = tmp_path / "sweep"
    overrides = ("task=induction", "seed=0,1,2", "train.steps=150", "train.target_accuracy=null")
    process = subprocess.Popen(
        sweep_command(sweep_dir, *overrides), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        statuses = sorted(r.get("status") for r in records(sweep_dir).values()) if sweep_dir.exists() else []
        if statuses == ["completed", "running"]:
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = records(sweep_dir)
    assert sorted(r["status"] for r in before.values()) == ["completed", "running"], "killed while job 2 ran"

    completed = run_sweep(tmp_path, sweep_dir, *overrides)
    after = records(sweep_dir)
    assert len(after) == 3
    assert all(r["status"] == "completed" for r in after.values())
    finished_first = next(name for name, r in before.items() if r["status"] == "completed")
    assert after[finished_first]["finished_at"] == before[finished_first]["finished_at"], "not run twice"
    assert "skipped" in completed.stderr + completed.stdout
    assert not list(sweep_dir.rglob("*.tmp"))
    assert len(load_results(sweep_dir).runs) == 3


@pytest.mark.slow
def test_joblib_runs_two_jobs_at_once_sharing_the_cores(tmp_path):
    completed = run_sweep(tmp_path, tmp_path / "sweep", "task=copy", "seed=0,1", "train.steps=60", "train.target_accuracy=null",
                          "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "train.progress=true")  # fmt: skip
    assert not PROGRESS_BAR.search(completed.stderr), "two workers' bars would garble each other"
    jobs = list(records(tmp_path / "sweep").values())
    assert [r["status"] for r in jobs] == ["completed", "completed"]
    assert all(r["num_threads"] == max(1, (os.cpu_count() or 1) // 2) for r in jobs)
    assert max(r["started_at"] for r in jobs) < min(r["finished_at"] for r in jobs), "the two jobs overlapped"


@pytest.mark.slow
def test_submitit_gives_the_same_results_and_report_as_the_basic_launcher(tmp_path):
    common = ("task=copy,induction", "seed=0", "train.steps=20", "train.num_threads=1")
    run_sweep(tmp_path, tmp_path / "basic", *common)
    run_sweep(tmp_path, tmp_path / "submitit", *common, "hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1")
    basic, submitit = records(tmp_path / "basic"), records(tmp_path / "submitit")
    assert sorted(basic) == sorted(submitit)
    for job in basic:
        assert submitit[job]["status"] == "completed"
        assert submitit[job]["metrics"] == basic[job]["metrics"]
        assert [without_timing(p) for p in submitit[job]["curve"]] == [without_timing(p) for p in basic[job]["curve"]]
    def accuracy_tables(name: str) -> str:
        """The report less its title, its timings and its note on how busy the machine was while they trained."""
        report = (tmp_path / name / "report" / "report.md").read_text().split("\n", 1)[1].split("Exact match:")[0]
        return "\n".join(line for line in report.splitlines() if "(the machine was busy)" not in line)

    assert "Test accuracy on scored positions" in accuracy_tables("basic") and accuracy_tables("submitit") == accuracy_tables("basic")


def without_timing(point: dict) -> dict:
    """A curve point less what depends on the machine's speed and load."""
    return {key: value for key, value in point.items() if key not in ("tokens_per_s", "load_1min", "cpu_share")}


def test_the_slurm_launcher_config_is_ready():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        launcher = compose(CONFIG_NAME, overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                           return_hydra_config=True).hydra.launcher  # fmt: skip
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert launcher.cpus_per_task == 4 and launcher.timeout_min == 120


@pytest.mark.slow
def test_the_default_sweep_shows_a_progress_bar(tmp_path):
    completed = run_sweep(tmp_path, tmp_path / "sweep", "task=copy", "seed=0", "train.steps=20", "train.target_accuracy=null", "train.progress=true")
    assert PROGRESS_BAR.search(completed.stderr), completed.stderr


def test_a_job_knows_whether_it_runs_in_the_process_that_launched_the_sweep(monkeypatch):
    monkeypatch.setattr(bench.core.job, "LAUNCHING_PID", None)  # restored after the test
    assert not runs_in_launching_process(), "unmarked: a spawned worker, which imported the job module afresh"
    mark_launching_process()
    assert runs_in_launching_process(), "the launching process runs its jobs itself (basic or surviving launcher)"
    with multiprocessing.get_context("fork").Pool(1) as workers:  # a forked worker inherits the mark, not the pid
        assert workers.apply(runs_in_launching_process) is False


def test_the_default_launcher_uses_only_hydras_public_api():
    tree = ast.parse(inspect.getsource(surviving_launcher))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not [name for name in imported if "._" in name], "a private module"
    assert all("._" not in cls.__module__ for cls in surviving_launcher.SurvivingLauncher.__mro__), "a private base class"
