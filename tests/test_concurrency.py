"""Concurrent writers: a job claims its directory, so that two sweeps into one directory train every
job once; a claim whose process is gone is taken over; workers of a killed parallel sweep end."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.core.job import run
from bench.core.results import CLAIM_FILE, claim

REPO = Path(__file__).resolve().parent.parent
QUICK = ("+debug=tiny", "train.steps=10", "train.eval_every=10", "analysis.length_generalisation.factors=[1]")


def dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout)


def test_a_job_claimed_by_a_live_process_is_left_to_it_and_an_abandoned_claim_is_taken_over(make_config, tmp_path):
    cfg = make_config(*QUICK)
    (tmp_path / CLAIM_FILE).write_text(json.dumps({"pid": os.getppid(), "hostname": socket.gethostname()}))
    skipped = run(cfg, tmp_path, single_run=False, overrides=[])
    assert skipped["claimed_by"]["pid"] == os.getppid() and not (tmp_path / "result.json").exists(), "not trained twice"
    (tmp_path / CLAIM_FILE).write_text(json.dumps({"pid": dead_pid(), "hostname": socket.gethostname()}))
    record = run(cfg, tmp_path, single_run=False, overrides=[])
    assert record["status"] == "completed" and not (tmp_path / CLAIM_FILE).exists(), "claimed, trained, released"


def test_a_claim_is_atomic_and_names_its_holder(tmp_path):
    assert claim(tmp_path) is None
    holder = claim(tmp_path)  # this process again: a second claim on a held directory fails
    assert holder == {"pid": os.getpid(), "hostname": socket.gethostname()}


def sweep(sweep_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "bench", "-m", "variant=standard", *QUICK, *overrides, f"hydra.sweep.dir={sweep_dir}"]


@pytest.mark.slow
def test_two_sweeps_into_one_directory_train_every_job_exactly_once(tmp_path):
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    overrides = ("task=copy,induction", "seed=0,1", "train.steps=150", "train.target_accuracy=null")
    first, second = (subprocess.Popen(sweep(tmp_path / "sweep", *overrides), cwd=tmp_path, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, env=environment) for _ in range(2))  # fmt: skip
    logs = [process.communicate(timeout=600)[0] for process in (first, second)]
    assert first.returncode == second.returncode == 0, logs
    trained = [line for log in logs for line in log.splitlines() if "completed, test accuracy" in line]
    assert len(trained) == 4, "each of the 4 jobs trained once, by one of the two sweeps"
    records = [json.loads(path.read_text()) for path in (tmp_path / "sweep").glob("*/result.json")]
    assert sorted(r["status"] for r in records) == ["completed"] * 4


@pytest.mark.slow
def test_the_workers_of_a_parallel_sweep_end_when_the_sweep_is_killed(tmp_path):
    sweep_dir = tmp_path / "sweep"
    process = subprocess.Popen(
        sweep(sweep_dir, "task=induction", "seed=0,1", "train.steps=100000", "train.target_accuracy=null",
              "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"),
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    deadline = time.monotonic() + 180
    workers: list[int] = []
    while time.monotonic() < deadline and len(workers) < 2:
        workers = [json.loads(p.read_text()).get("pid") for p in sweep_dir.glob("*/result.json")] if sweep_dir.exists() else []
        time.sleep(0.2)
    assert len(workers) == 2 and process.pid not in workers, "two jobs running in two worker processes"
    os.kill(process.pid, signal.SIGKILL)  # the parent only, not its process group
    process.wait()
    time.sleep(5)
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert all(json.loads(p.read_text())["status"] == "running" for p in sweep_dir.glob("*/result.json")), "no result written after"
