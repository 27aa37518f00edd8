"""Concurrent writers: a job claims its directory, so that two sweeps into one directory train every
job once; a claim ends with its process, and of processes taking it over at once exactly one
gets it; workers of a killed parallel sweep end."""
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
from bench.core.results import CLAIM_FILE, claim, release

REPO = Path(__file__).resolve().parent.parent
QUICK = ("+debug=tiny", "train.steps=10", "train.eval_every=10", "analysis.length_generalisation.factors=[1]")


def dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout)


def claimer(script: str, job_dir: Path) -> subprocess.Popen:
    """A process running `script` with the job directory as its argument, talking through pipes."""
    return subprocess.Popen([sys.executable, "-c", script, str(job_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip


HOLD_A_CLAIM = """
import sys
from pathlib import Path
from bench.core.results import claim

assert claim(Path(sys.argv[1])) is None
print("claimed", flush=True)
sys.stdin.read()  # holds it until killed
"""


def test_a_job_claimed_by_a_live_process_is_left_to_it_and_a_killed_ones_claim_is_taken_over(make_config, tmp_path):
    cfg = make_config(*QUICK)
    holder = claimer(HOLD_A_CLAIM, tmp_path)
    try:
        assert holder.stdout.readline().strip() == "claimed"
        skipped = run(cfg, tmp_path, single_run=False, overrides=[])
        assert skipped["claimed_by"] == {"pid": holder.pid, "hostname": socket.gethostname()}
        assert not (tmp_path / "result.json").exists(), "not trained twice"
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / CLAIM_FILE).exists(), "the killed holder left its claim file behind, no longer locked"
    record = run(cfg, tmp_path, single_run=False, overrides=[])
    assert record["status"] == "completed" and not (tmp_path / CLAIM_FILE).exists(), "claimed, trained, released"


def test_a_claim_names_its_holder_and_ends_when_released(tmp_path):
    assert claim(tmp_path) is None
    holder = claim(tmp_path)  # this process again: a second claim on a held directory fails
    assert holder == {"pid": os.getpid(), "hostname": socket.gethostname()}
    release(tmp_path)
    assert not (tmp_path / CLAIM_FILE).exists()
    assert claim(tmp_path) is None
    release(tmp_path)


TAKE_OVER_A_CLAIM = """
import sys
from pathlib import Path
from bench.core.results import claim

print("ready", flush=True)
sys.stdin.readline()
print("won" if claim(Path(sys.argv[1])) is None else "lost", flush=True)
sys.stdin.read()  # keeps what it won until every contender has answered
"""


def test_of_processes_taking_over_an_abandoned_claim_at_once_exactly_one_wins(tmp_path):
    (tmp_path / CLAIM_FILE).write_text(json.dumps({"pid": dead_pid(), "hostname": socket.gethostname()}))
    contenders = [claimer(TAKE_OVER_A_CLAIM, tmp_path) for _ in range(12)]
    try:
        assert [contender.stdout.readline().strip() for contender in contenders] == ["ready"] * len(contenders)
        for contender in contenders:  # as close to at once as pipes allow
            contender.stdin.write("go\n")
            contender.stdin.flush()
        answers = [contender.stdout.readline().strip() for contender in contenders]
    finally:
        for contender in contenders:
            contender.stdin.close()
            contender.wait(timeout=60)
    assert sorted(answers) == ["lost"] * (len(contenders) - 1) + ["won"]


def sweep(sweep_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "bench", "-m", "variant=standard", *QUICK, *overrides, f"hydra.sweep.dir={sweep_dir}"]


@pytest.mark.slow
def test_two_sweeps_into_one_directory_train_every_job_exactly_once(tmp_path):
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    overrides = ("task=copy,induction", "seed=0,1", "train.steps=150", "train.target_accuracy=null", "train.lr=3e-3")
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
