"""Inputs and faults as a hostile user makes them, one table per class: each is refused in one line
with exit code 2 and nothing written, or ends with nothing lost and a report written."""
from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from test_report import result, write_results

import bench.core.job
import bench.core.results
import bench.report.callbacks
from bench.analyze import main as analyze
from bench.cli import main as bench_main
from bench.core.config import build_model, build_task
from bench.core.job import run
from bench.core.measure import ANALYSIS_DIR, WEIGHTS_FILE, weights_intact
from bench.core.memory import estimate_memory, pool_size
from bench.core.results import MAX_JSON_BYTES, read_json, record_unstartable, write_json_atomic
from bench.report.__main__ import main as report_main
from bench.report.build import REPORT_MARK, write_report
from bench.report.callbacks import ReportOnMultirunEnd
from bench.report.records import load_results
from bench.speed import peak_allocated_bytes


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


@pytest.mark.slow  # 3 to 4 s: keeps the default suite under 3 minutes; CI runs it with -m slow
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


def edit(path: str, value):
    """A change to a record: the value at a dotted path (a number indexes a list) replaced."""
    def apply(record: dict) -> dict:
        *parents, last = [int(part) if part.isdigit() else part for part in path.split(".")]
        node = record
        for part in parents:
            node = node[part]
        node[last] = value
        return record

    return apply


# One hand-edited or damaged record each: it is named and left out, and the report is written.
BAD_RECORDS = [
    ("metrics.test.accuracy", "high", 'metrics.test.accuracy is "high", not a number'),
    ("curve.1.step", "x", 'curve[1].step is "x", not an integer'),
    ("seed", "zero", 'seed is "zero", not an integer'),
    ("seed", True, "seed is true, not an integer"),
    ("status", ["completed"], 'status is ["completed"], not text'),
    ("metrics", [1, 2], "metrics is [1, 2], not an object"),
    ("curve", {"a": 1}, 'curve is {"a": 1}, not a list'),
    ("finished_at", 5, "finished_at is 5, not text"),
    ("variant", "triple", 'it names variant "triple" but its config ran "standard"'),
    ("config.train.lr", "fast", "train.lr is 'fast' where the other rows have a number"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD_RECORDS, ids=[f"{p}={v}" for p, v, _ in BAD_RECORDS])
def test_a_record_of_the_wrong_shape_is_named_and_left_out_and_the_report_is_written(tmp_path, path, value, message):
    records = {str(seed): result("standard", "copy", seed, 0.9 + seed / 100) for seed in range(3)}
    records["0"] = edit(path, value)(records["0"])
    write_results(tmp_path / "sweep", records)
    text = write_report(tmp_path / "sweep", tmp_path / "out").read_text()
    assert "could not be built" not in text
    assert f"result.json is left out: {message}" in text
    runs = pd.read_parquet(tmp_path / "out" / "results.parquet").set_index("run")
    assert runs.loc["0", "status"] == "unreadable" and (runs.loc[["1", "2"], "status"] == "completed").all()


SPEED_FILES = [
    ("[1, 2]", "The speed file is left out: speed.json is not a pytest-benchmark JSON object"),
    ('{"benchmarks": "x"}', "The speed file is left out: speed.json is not a pytest-benchmark JSON object"),
    ("{not json", "The speed file is left out: speed.json is not JSON"),
    ('{"benchmarks": [{"name": "x"}]}', "1 entries of speed.json are left out (the first: not a benchmark with stats)"),
    ('{"benchmarks": [{"name": "y", "stats": {"median": "fast", "iqr": 0}}]}', "y: its stats have no positive median"),
    ('{"benchmarks": [{"name": "z", "stats": {"median": 1, "iqr": 0}, "extra_info": {"variant": "standard", "T": "long", "mode": "forward"}}]}',
     "z: T is 'long'"),
]


@pytest.mark.parametrize(("content", "message"), SPEED_FILES, ids=[content[:24] for content, _ in SPEED_FILES])
def test_a_damaged_speed_file_is_named_in_its_section_and_the_report_is_written(tmp_path, content, message):
    write_results(tmp_path / "sweep", {"0": result("standard", "copy", 0, 1.0)})
    (tmp_path / "sweep" / "speed.json").write_text(content)
    text = write_report(tmp_path / "sweep", tmp_path / "out").read_text()
    assert "could not be built" not in text and message in text.split("## Speed")[1]


def test_a_mistyped_analysis_row_is_left_out_and_the_others_kept(tmp_path):
    sweep = write_results(tmp_path / "sweep", {str(seed): result("standard", "copy", seed, 1.0) for seed in range(2)})
    for seed, score in ((0, 0.5), (1, "high")):
        (sweep / str(seed) / ANALYSIS_DIR).mkdir()
        write_json_atomic(sweep / str(seed) / ANALYSIS_DIR / "head_scores.json",
                          {"status": "completed", "rows": [{"layer": 0, "head": 0, "pattern": "induction", "score": score}]})  # fmt: skip
    rows = load_results(sweep).analyses["head_scores"]
    assert list(rows["run"]) == ["0"] and list(rows["score"]) == [0.5]
    assert "could not be built" not in write_report(sweep, tmp_path / "out").read_text()


def test_the_same_sweep_named_twice_counts_once(tmp_path):
    sweep = write_results(tmp_path / "sweep", {str(seed): result("standard", "copy", seed, 1.0) for seed in range(2)})
    report_main([str(sweep), str(tmp_path / "sweep" / "." ), "--out", str(tmp_path / "out")])
    assert len(pd.read_parquet(tmp_path / "out" / "results.parquet")) == 2


@pytest.mark.parametrize("kind", ["fifo", "device", "huge"])
def test_only_regular_files_of_bounded_size_are_read(tmp_path, kind):
    path = tmp_path / "result.json"
    if kind == "fifo":
        os.mkfifo(path)  # reading it would wait for a writer forever
    elif kind == "device":
        path.symlink_to("/dev/zero")  # reading it would never end
    else:
        with open(path, "wb") as handle:
            handle.truncate(MAX_JSON_BYTES + 1)
    with pytest.raises(ValueError, match="not a regular file" if kind != "huge" else "over the"):
        read_json(path)
    write_results(tmp_path / "sweep", {"1": result("standard", "copy", 1, 1.0)})
    (tmp_path / "sweep" / "0").mkdir()
    os.rename(path, tmp_path / "sweep" / "0" / "result.json")
    runs = load_results(tmp_path / "sweep").runs.set_index("run")
    assert runs.loc["0", "status"] == "unreadable" and runs.loc["1", "status"] == "completed"


def test_a_run_that_never_finished_says_why_it_is_not_in_the_tables(tmp_path):
    elsewhere = {"hostname": "another-machine"}
    sweep = write_results(tmp_path / "sweep", {"0": result("standard", "copy", 0, 1.0),
                                               "1": result("standard", "copy", 1, 0.0, status="running", pid=1, environment=elsewhere)})  # fmt: skip
    runs = load_results(sweep).runs.set_index("run")
    assert runs.loc["1", "error"].startswith("started on another-machine, which this machine cannot check")


# Hydra's own options (issue 26, class 4): each refused before anything is written.
HYDRA_OPTIONS = [
    (["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs=0 is not a worker count"),
    (["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=-100000"], "hydra.launcher.n_jobs=-100000 is not a worker count"),
    (["-m", "hydra/launcher=joblib", "hydra.launcher.backend=foo"], "hydra.launcher.backend='foo' is unknown to joblib; allowed: null"),
    (["-m", "hydra.sweeper.max_batch_size=-1"], "hydra.sweeper.max_batch_size=-1 is not a positive count"),
    (["-m", "train.lr=interval(0,1)"], "is a INTERVAL_SWEEP sweep, which the basic sweeper cannot expand"),
    (["-m", "hydra.sweep.dir=afile"], "hydra.sweep.dir=afile cannot be made: .*afile is a file, not a folder"),
    (["-m", "hydra.sweep.dir=afile/sub"], "hydra.sweep.dir=afile/sub cannot be made: .*afile is a file"),
    (["hydra.run.dir=afile/run"], "hydra.run.dir=afile/run cannot be made: .*afile is a file"),
    (["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=-5"], "hydra.launcher.timeout_min=-5 is out of range; allowed: >= 1"),
    (["--cfg", "job", "-m"], "--multirun and --cfg cannot be used together"),
    (["--config-dir", "no_such_dir"], "--config-dir no_such_dir is not a directory"),
]
if shutil.which("srun") is None:
    HYDRA_OPTIONS.append((["-m", "hydra/launcher=slurm"], "the SLURM launcher needs srun, which this machine lacks"))


@pytest.mark.parametrize(("arguments", "message"), HYDRA_OPTIONS, ids=[" ".join(a) for a, _ in HYDRA_OPTIONS])
def test_a_hydra_option_that_cannot_work_is_refused_in_one_line_and_nothing_is_written(tmp_path, monkeypatch, capsys, arguments, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("a file where a folder would go\n")
    monkeypatch.setattr(sys, "argv", ["bench", *arguments, "+debug=tiny", "variant=standard", "task=copy", "train.steps=1"])
    with pytest.raises(SystemExit) as exited:
        bench_main()
    error = capsys.readouterr().err
    assert exited.value.code == 2 and error.count("\n") == 1 and error.startswith("bench: error: ")
    assert re.search(message, error), error
    assert [path.name for path in tmp_path.iterdir()] == ["afile"], "nothing written"


QUICK = ("+debug=tiny", "train.steps=10", "train.eval_every=10", "analysis.length_generalisation.factors=[1]")


@pytest.mark.parametrize("damage", ["swapped", "truncated", "deleted"])
def test_weights_that_are_not_the_recorded_ones_are_refused_and_a_rerun_repairs_them(make_config, tmp_path, capsys, damage):
    sweep = tmp_path / "sweep"
    jobs = {seed: make_config(*QUICK, f"seed={seed}") for seed in (0, 1)}
    first = {seed: run(cfg, sweep / str(seed), single_run=False, overrides=[]) for seed, cfg in jobs.items()}
    assert all(len(record["weights_sha256"]) == 64 for record in first.values())
    weights = [sweep / str(seed) / WEIGHTS_FILE for seed in jobs]
    if damage == "swapped":
        contents = [path.read_bytes() for path in weights]
        for path, content in zip(weights, reversed(contents)):
            path.write_bytes(content)
    elif damage == "truncated":
        weights[0].write_bytes(weights[0].read_bytes()[:100])
    else:
        weights[0].unlink()
    analyze([str(sweep), "--no-report"])
    refused = capsys.readouterr().err
    assert "0: cannot be rebuilt" in refused or "0: no model.safetensors" in refused, refused
    again = {seed: run(cfg, sweep / str(seed), single_run=False, overrides=[]) for seed, cfg in jobs.items()}
    damaged = {0, 1} if damage == "swapped" else {0}
    assert {seed for seed in jobs if again[seed]["finished_at"] != first[seed]["finished_at"]} == damaged, "exactly the damaged jobs re-train"
    assert all(weights_intact(sweep / str(seed), again[seed]) for seed in jobs)


# Checks that would allocate what no machine has (issue 26, class 2): refused from the config alone.
TOO_BIG = [
    (["model.d_model=65536", "model.n_heads=1"], "weights and optimiser 384 GiB.*keys that drive the largest part: model.d_model"),
    (["task.vocab_size=100000000000"], "keys that drive the largest part: train.batch_size, task.seq_len, task.vocab_size"),
    (["task=mad_fuzzy_recall", "task.train_examples=1000000000000"], "data 9.5.e\\+05 GiB.*largest part: task.train_examples"),
    (["memory_limit_gb=0.001"], "over the 1.02 MiB of memory_limit_gb=0.001"),
    (["variant=handcoded_induction", "variant.head_dim=-4"], "variant.head_dim=-4 is out of range; allowed: \\[2, 65536\\]"),
]


@pytest.mark.parametrize(("arguments", "message"), TOO_BIG, ids=[" ".join(a) for a, _ in TOO_BIG])
def test_a_job_no_machine_can_hold_is_refused_before_anything_is_allocated(tmp_path, monkeypatch, capsys, arguments, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["bench", *arguments])
    with pytest.raises(SystemExit) as exited:
        bench_main()
    error = capsys.readouterr().err
    assert exited.value.code == 2 and error.count("\n") == 1 and re.search(message, error), error
    assert not any(tmp_path.iterdir()), "nothing written"


def measured_peak(cfg) -> int:
    """Peak bytes allocated building the model and taking one AdamW training step, on the CPU (a
    full-batch step where the training set is smaller than the batch, as training takes it)."""
    pool = pool_size(build_task(cfg))
    batch = cfg.train.batch_size if pool is None else min(pool, cfg.train.batch_size)

    def step() -> None:
        model = build_model(cfg)
        optimiser = torch.optim.AdamW(model.parameters())
        tokens = torch.randint(cfg.task.vocab_size, (batch, cfg.task.seq_len))
        logits = model(tokens)
        logits = logits[0] if isinstance(logits, tuple) else logits
        torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.task.vocab_size), tokens.reshape(-1)).backward()
        optimiser.step()

    return peak_allocated_bytes(step)


@pytest.mark.parametrize("overrides", [[], ["variant=triple"], ["variant=simplicial"], ["variant=differential", "task=induction"],
                                       ["task=assoc_recall", "model.d_model=128", "train.batch_size=64"],
                                       ["+experiment=grokking", "task.p=23", "task.vocab_size=24"]], ids=str)  # fmt: skip
def test_the_memory_estimate_is_within_2x_of_a_real_training_steps_peak(make_config, overrides):
    cfg = make_config(*overrides)
    with torch.device("meta"):
        model = build_model(cfg)
    estimate = estimate_memory(cfg, model, build_task(cfg))
    assert estimate.activations_exact
    assert 0.5 <= estimate.total / measured_peak(cfg) <= 2


def test_a_variant_the_meta_device_cannot_run_gets_a_rough_figure(make_config, monkeypatch):
    cfg = make_config()
    with torch.device("meta"):
        model = build_model(cfg)
    monkeypatch.setattr(model, "forward", lambda tokens: (_ for _ in ()).throw(NotImplementedError("no meta kernel")))
    estimate = estimate_memory(cfg, model, build_task(cfg))
    assert not estimate.activations_exact and estimate.activations > 0 and "rough" in estimate.describe()


def test_cfg_job_prints_the_memory_estimate(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bench", "--cfg", "job", "variant=triple"])
    bench_main()
    first = capsys.readouterr().out.splitlines()[0]
    assert re.fullmatch(r"# memory estimate: about [\d.]+ MiB: weights and optimiser .* data 0 MiB", first), first


def test_a_full_disk_fails_the_job_in_one_line_and_leaves_no_running_record(make_config, tmp_path, monkeypatch, caplog):
    writes = []

    def write_until_full(path, payload):
        writes.append(path)
        if len(writes) > 1:  # the job's first record fits; the disk is full by the time it ends
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        write_json_atomic(path, payload)

    monkeypatch.setattr(bench.core.job, "write_json_atomic", write_until_full)
    record = run(make_config(*QUICK), tmp_path / "job", single_run=False, overrides=[])
    assert record["status"] == "failed" and "could not record its result (No space left on device)" in record["error"]
    assert not (tmp_path / "job" / "result.json").exists(), "no record left claiming to run"
    monkeypatch.setattr(bench.core.results, "write_json_atomic", write_until_full)
    record_unstartable(tmp_path, ["seed=1"], "next", OSError(errno.ENOSPC, "No space left on device"))  # logs, does not raise
    assert "cannot be written (No space left on device): job next is not recorded there" in caplog.text


def test_a_report_the_disk_cannot_hold_is_said_in_one_line(tmp_path, monkeypatch, caplog):
    sweep = write_results(tmp_path / "sweep", {"0": result("standard", "copy", 0, 1.0)})

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(bench.report.callbacks, "write_report", full)
    ReportOnMultirunEnd().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    lines = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert len(lines) == 1 and "(No space left on device); rebuild it with python -m bench.report" in lines[0] and "\n" not in lines[0]
    assert not caplog.records[-1].exc_info, "no traceback"
