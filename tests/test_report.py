"""The data layer of the report: result files -> tidy tables -> Markdown summary."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from bench.report import load_results, main, write_report


def result(variant, task, seed, accuracy, status="completed", lr=0.003, **extra):
    record = {
        "status": status, "variant": variant, "task": task, "seed": seed,
        "config": {"seed": seed, "variant": {"name": variant}, "task": {"name": task, "seq_len": 32}, "train": {"lr": lr, "target_accuracy": 0.99}},
        "config_hash": f"{variant}{task}{seed}{lr}", "environment": {"git_commit": "abc123"},
    }  # fmt: skip
    if status != "running":
        record.update(
            metrics={"loss": 0.1, "accuracy": accuracy, "exact_match": accuracy / 2},
            curve=[{"step": 0, "eval_accuracy": 0.1, "eval_loss": 2.0}, {"step": 100, "eval_accuracy": accuracy, "eval_loss": 0.5}],
            steps_to_target=100 if accuracy >= 0.99 else None, steps_run=200, n_params=1000,
            wall_time_s=3.0, train_tokens_per_s=5000.0,
        )  # fmt: skip
    record.update(extra)
    return record


@pytest.fixture
def sweep(tmp_path):
    records = {
        "0": result("standard", "copy", 0, 1.0),
        "1": result("standard", "copy", 1, 0.98),
        "2": result("standard", "induction", 0, 0.5),
        "3": result("standard", "induction", 1, 0.0, status="failed", error="RuntimeError: boom"),
        "4": result("standard", "induction", 2, 0.0, status="running"),
    }
    for name, record in records.items():
        (tmp_path / "sweep" / name).mkdir(parents=True)
        (tmp_path / "sweep" / name / "result.json").write_text(json.dumps(record))
    (tmp_path / "sweep" / "5").mkdir()
    (tmp_path / "sweep" / "5" / "result.json").write_text('{"status": "compl')
    return tmp_path / "sweep"


def test_every_result_becomes_one_tidy_row(sweep):
    results = load_results(sweep)
    runs, curves = results.runs, results.curves
    assert len(runs) == 6 and runs["run"].tolist() == ["0", "1", "2", "3", "4", "5"]
    assert runs["status"].tolist() == ["completed", "completed", "completed", "failed", "running", "unreadable"]
    assert runs.loc[0, "train.lr"] == 0.003 and runs.loc[0, "final_accuracy"] == 1.0
    assert len(curves) == 2 * 4 and set(curves.columns) >= {"run", "variant", "task", "seed", "step", "eval_accuracy"}


def test_summary_aggregates_over_seeds_and_lists_what_did_not_complete(sweep, tmp_path):
    report = write_report(sweep, tmp_path / "out")
    text = report.read_text()
    assert "6 runs: 3 completed, 1 failed, 1 running, 1 unreadable." in text
    assert "| standard  | 0.990 ± 0.014 (n=2) | 0.500 (n=1)" in text
    assert "| 100 (1/2)  " in text
    assert "RuntimeError: boom" in text and "JSONDecodeError" in text
    assert pd.read_parquet(tmp_path / "out" / "results.parquet").equals(load_results(sweep).runs)
    assert len(pd.read_csv(tmp_path / "out" / "results.csv")) == 6


def write_results(directory, records):
    for index, record in enumerate(records):
        (directory / str(index)).mkdir(parents=True)
        (directory / str(index) / "result.json").write_text(json.dumps(record))


def test_the_best_swept_learning_rate_is_chosen_and_shown(tmp_path):
    write_results(tmp_path / "sweep", [
        result("standard", "copy", seed, accuracy, lr=lr)
        for seed in (0, 1) for lr, accuracy in ((0.001, 0.6), (0.01, 0.9), (0.1, 0.3))
    ])  # fmt: skip
    text = write_report(tmp_path / "sweep", tmp_path / "out").read_text()
    assert "| standard  | 0.900 ± 0.000 (n=2) |" in text
    assert "| standard  | copy   |      0.01 | 0.900 ± 0.000 (n=2)" in text
    assert "0.600" not in text.split("## Learning curves")[0]


def test_a_swept_setting_gets_its_own_row(tmp_path):
    records = [result("standard", "copy", 0, 0.9), result("standard", "copy", 0, 0.95)]
    records[1]["config"]["model"] = {"d_model": 128}
    records[0]["config"]["model"] = {"d_model": 64}
    records[1]["config_hash"] = "another config"
    write_results(tmp_path / "sweep", records)
    text = write_report(tmp_path / "sweep", tmp_path / "out").read_text()
    assert "| standard model.d_model=64  | 0.900 (n=1) |" in text and "| standard model.d_model=128 | 0.950 (n=1) |" in text


def test_command_line(sweep, tmp_path, capsys):
    main([str(sweep), "--out", str(tmp_path / "cli")])
    assert capsys.readouterr().out.strip() == f"report: {tmp_path / 'cli' / 'report.md'}"
    with pytest.raises(SystemExit) as raised:
        main([str(tmp_path / "missing")])
    assert raised.value.code == 2


def test_the_speed_section_gives_ratios_to_sdpa_and_to_the_machine_ceiling(sweep, tmp_path):
    def timing(variant, mode, T, median, flops=None):
        info = {"variant": variant, "mode": mode, "T": T, "batch": 4096 // T, "flops": flops, "tokens_per_s": 4096 / median}
        return {"stats": {"median": median, "iqr": median / 10}, "extra_info": info}

    speed = {
        "machine_info": {"cpu": {"brand_raw": "Test CPU"}}, "datetime": "2026-11-22T20:00:00",
        "benchmarks": [
            {"stats": {"median": 1.0, "iqr": 0.0}, "extra_info": {"mode": "matmul", "flops": 50e9}},
            timing("sdpa (reference)", "forward_backward", 256, 0.010, 1e8),
            timing("standard", "forward_backward", 256, 0.011, 1e8),
            timing("standard", "train_step", 64, 0.02),
        ],
    }  # fmt: skip
    (tmp_path / "speed.json").write_text(json.dumps(speed))
    text = write_report(sweep, tmp_path / "out", speed_file=tmp_path / "speed.json").read_text()
    assert "matmul ceiling of 50.0 GFLOP/s" in text and "Test CPU" in text
    assert "11.00 ms (1.10× sdpa, 18% of peak)" in text
    assert (tmp_path / "out" / "figures" / "speed.png").exists() and (tmp_path / "out" / "figures" / "gflops.png").exists()
    assert "## Speed" not in write_report(sweep, tmp_path / "none", speed_file=tmp_path / "missing.json").read_text()


def test_the_loud_mismatch_table_appears_where_the_triple_variant_ran(tmp_path):
    write_results(tmp_path / "with", [result("triple", "copy", 0, 0.9)])
    text = write_report(tmp_path / "with", tmp_path / "out").read_text()
    assert "## Triple-product: loud mismatches" in text and "-10000" in text
    assert (tmp_path / "out" / "figures" / "loud_mismatch.png").exists()
    write_results(tmp_path / "without", [result("standard", "copy", 0, 0.9)])
    assert "loud mismatches" not in write_report(tmp_path / "without", tmp_path / "out2").read_text()
