"""The report's data layer and protocol: result files -> tidy tables -> one set of selected runs ->
the Markdown summary, with test-set numbers and 95% intervals."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from plugin.statistics import describe, interval
from bench.report.__main__ import main
from bench.report.build import write_report
from bench.report.figures import carried_forward
from bench.report.protocol import select_runs, setting_labels, swept_settings
from bench.report.records import load_results


def result(variant, task, seed, test, status="completed", lr=0.003, validation=None, **extra):
    validation = test if validation is None else validation
    record = {
        "status": status, "variant": variant, "task": task, "seed": seed,
        "config": {"seed": seed, "variant": {"name": variant}, "task": {"name": task, "seq_len": 32}, "train": {"lr": lr, "target_accuracy": 0.99}},
        "config_hash": f"{variant}{task}{seed}{lr}", "environment": {"git_commit": "abc123"}, "finished_at": f"2026-11-23T00:00:{seed:02d}",
    }  # fmt: skip
    if status in ("completed", "diverged"):
        record.update(
            metrics={"validation": {"loss": 1 - validation, "accuracy": validation, "exact_match": validation / 2},
                     "test": {"loss": 1 - test, "accuracy": test, "exact_match": test / 2}},
            curve=[{"step": 0, "test_accuracy": 0.1, "test_loss": 2.0}, {"step": 100, "test_accuracy": test, "test_loss": 0.5}],
            steps_to_target={"validation": 100 if validation >= 0.99 else None, "test": 100 if test >= 0.99 else None},
            steps_run=200, n_params=1000, chance_accuracy=0.0625, wall_time_s=3.0, train_tokens_per_s=5000.0,
        )  # fmt: skip
    record.update(extra)
    return record


def figure(report_md: Path, caption: str) -> bytes:
    """The PNG of the first figure of the report (in its report.html) whose caption holds `caption`; b"" if none."""
    from bench.report.render import figures_in

    figures = figures_in((Path(report_md).parent / "report.html").read_text())
    return next((png for text, png in figures.items() if caption in text), b"")


def write_results(directory, records):
    for name, record in (records.items() if isinstance(records, dict) else enumerate(records)):
        (directory / str(name)).mkdir(parents=True)
        (directory / str(name) / "result.json").write_text(record if isinstance(record, str) else json.dumps(record))
    return directory


@pytest.fixture
def sweep(tmp_path):
    return write_results(tmp_path / "sweep", {
        "0": result("standard", "copy", 0, 1.0),
        "1": result("standard", "copy", 1, 0.98),
        "2": result("standard", "induction", 0, 0.5),
        "3": result("standard", "induction", 1, 0.0, status="failed", error="RuntimeError: boom"),
        "4": result("standard", "induction", 2, 0.0, status="running"),
        "5": '{"status": "compl',
        "6": "[1, 2, 3]",
    })  # fmt: skip


def test_every_result_becomes_one_tidy_row_and_unreadable_files_are_named(sweep):
    runs = load_results(sweep).runs
    assert runs["run"].tolist() == ["0", "1", "2", "3", "4", "5", "6"]
    assert runs["status"].tolist() == ["completed", "completed", "completed", "failed", "running", "unreadable", "unreadable"]
    assert runs.loc[0, "train.lr"] == 0.003 and runs.loc[0, "test_accuracy"] == 1.0 and runs.loc[0, "validation_accuracy"] == 1.0


def test_the_interval_is_students_t_over_seeds_and_bounded_to_accuracy():
    result = interval([0.9, 0.8, 0.7], bounds=None)
    assert result.mean == pytest.approx(0.8) and result.half_width == pytest.approx(4.302653 * 0.1 / 3**0.5, rel=1e-5)
    assert describe([1.0, 0.98]) == "0.990 [0.863, 1.000] (n=2)"
    assert describe([0.5]) == "0.500 (n=1)" and describe([]) == "—"


def test_the_summary_gives_test_accuracy_with_its_interval_and_lists_what_did_not_complete(sweep, tmp_path):
    text = write_report(sweep, tmp_path / "out").read_text()
    assert "7 runs from 1 sweep: 3 completed, 2 unreadable, 1 failed, 1 running." in text
    assert "| standard  | model  | 0.990 [0.863, 1.000] (n=2) | 0.500 (n=1)" in text
    assert "| 100 (1/2)  " in text
    assert "RuntimeError: boom" in text and "result.json is not JSON" in text and "result.json is left out: not a JSON object" in text
    assert pd.read_parquet(tmp_path / "out" / "results.parquet").equals(load_results(sweep).runs)
    assert len(pd.read_parquet(tmp_path / "out" / "results.parquet")) == 7


def test_the_learning_rate_is_chosen_on_validation_and_every_number_is_on_test(tmp_path):
    # lr 0.01 has the better validation accuracy and the worse test accuracy: it is chosen all the same
    sweep = write_results(tmp_path / "sweep", [
        result("standard", "copy", seed, test, lr=lr, validation=validation)
        for seed in (0, 1) for lr, validation, test in ((0.001, 0.7, 0.95), (0.01, 0.9, 0.6), (0.1, 0.3, 0.3))
    ])  # fmt: skip
    selection = select_runs(load_results(sweep).runs)
    assert selection.selected["train.lr"].unique().tolist() == [0.01] and len(selection.selected) == 2
    text = write_report(sweep, tmp_path / "out").read_text()
    summary = text.split("## Learning curves")[0]
    assert "| standard  | model  | 0.600 [0.600, 0.600] (n=2) |" in summary and "0.950" not in summary


def test_a_diverged_seed_counts_against_its_learning_rate_and_is_never_averaged_in(tmp_path):
    sweep = write_results(tmp_path / "sweep", [
        result("standard", "copy", 0, 0.99, lr=0.1), result("standard", "copy", 1, 0.5, lr=0.1, status="diverged"),
        result("standard", "copy", 0, 0.9, lr=0.01), result("standard", "copy", 1, 0.9, lr=0.01),
    ])  # fmt: skip
    selection = select_runs(load_results(sweep).runs)
    rates = selection.grid.set_index("train.lr")
    assert rates.loc[0.1, "validation_accuracy"] == pytest.approx(0.495) and rates.loc[0.1, "diverged"] == 1
    assert selection.selected["train.lr"].tolist() == [0.01, 0.01]
    assert "diverged" in write_report(sweep, tmp_path / "out").read_text().split("## Runs that did not complete")[1]


def test_options_of_one_variant_only_are_not_swept_settings(tmp_path):
    standard, triple = result("standard", "copy", 0, 0.9), result("triple", "copy", 0, 0.8)
    standard["config"]["variant"]["rope_base"] = 10000.0
    triple["config"]["variant"].update(rope_base=10000.0, learnable_temperature=False)
    runs = load_results(write_results(tmp_path / "sweep", [standard, triple])).runs
    assert swept_settings(runs) == []
    assert select_runs(runs).selected["setting"].tolist() == ["standard", "triple"]


def test_a_swept_setting_gets_its_own_row(tmp_path):
    records = [result("standard", "copy", 0, 0.9), result("standard", "copy", 0, 0.95)]
    records[0]["config"]["model"] = {"d_model": 64}
    records[1]["config"]["model"] = {"d_model": 128}
    records[1]["config_hash"] = "another config"
    text = write_report(write_results(tmp_path / "sweep", records), tmp_path / "out").read_text()
    assert "| standard model.d_model=64  | model  | 0.900 (n=1) |" in text and "| standard model.d_model=128 | model  | 0.950 (n=1) |" in text


def test_a_swept_task_option_that_is_no_difficulty_axis_makes_another_task_never_a_setting(tmp_path):
    records = [result(variant, "copy", 0, accuracy) for variant, accuracy in (("standard", 1.0), ("positional", 0.3))]
    records += [result(variant, "copy", 0, accuracy) for variant, accuracy in (("standard", 0.99), ("positional", 1.0))]
    for record, variable in zip(records, (True, True, False, False)):
        record["config"]["task"]["variable_length"] = variable
        record["config_hash"] += str(variable)
    selected = select_runs(load_results(write_results(tmp_path / "sweep", records)).runs).selected
    assert sorted(zip(selected["task"], selected["setting"])) == [
        ("copy variable_length=False", "positional"), ("copy variable_length=False", "standard"),
        ("copy variable_length=True", "positional"), ("copy variable_length=True", "standard"),
    ]  # fmt: skip


def test_learning_curves_hold_a_stopped_runs_last_value_so_the_mean_keeps_its_seeds():
    curves = pd.DataFrame({
        "run": ["a", "a", "b", "b", "b"], "setting": "standard", "variant": "standard", "task": "copy", "seed": [0, 0, 1, 1, 1],
        "step": [0, 100, 0, 100, 200], "test_accuracy": [0.1, 1.0, 0.1, 0.5, 0.9],
    })  # fmt: skip
    extended = carried_forward(curves, "test_accuracy")
    assert extended.groupby("step")["run"].nunique().tolist() == [2, 2, 2]
    assert extended[(extended["run"] == "a") & (extended["step"] == 200)]["test_accuracy"].item() == 1.0


def test_several_sweeps_make_one_report_and_a_config_run_twice_counts_once(tmp_path):
    first = write_results(tmp_path / "a", [result("standard", "copy", 0, 0.9), result("standard", "copy", 1, 0.8)])
    second = write_results(tmp_path / "b", [result("standard", "copy", 1, 0.8), result("triple", "copy", 0, 0.7)])
    runs = load_results(first, second).runs
    assert len(runs) == 3 and sorted(runs["variant"]) == ["standard", "standard", "triple"]
    text = write_report([first, second], tmp_path / "out").read_text()
    assert "3 runs from 2 sweeps" in text and "| standard  | model  | 0.850 [0.215, 1.000] (n=2) |" in text


def test_command_line(sweep, tmp_path, capsys):
    main([str(sweep), "--out", str(tmp_path / "cli")])
    out = capsys.readouterr().out
    assert f"report: {tmp_path / 'cli' / 'report.md'}" in out and str(tmp_path / "cli" / "report.html") in out
    main([str(sweep)])
    assert (sweep / "report" / "report.md").exists(), "by default a report goes beside the results it describes"
    with pytest.raises(SystemExit) as raised:
        main([str(tmp_path / "missing")])
    assert raised.value.code == 2
    with pytest.raises(SystemExit):
        main([str(sweep), str(sweep)])  # several sweeps need --out


def test_nothing_from_a_run_can_turn_into_markup(tmp_path):
    hostile = result("standard", "copy", 0, 0.0, status="failed", error="<script>alert(1)</script> | [x](http://evil) *bold*")
    text = write_report(write_results(tmp_path / "sweep", [hostile]), tmp_path / "out").read_text()
    assert r"\<script\>alert(1)\</script\> \| [x]\(http://evil) \*bold\*" in text
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_the_speed_section_uses_only_the_reports_own_variants(sweep, tmp_path):
    def timing(variant, mode, T, median, flops=None):
        info = {"variant": variant, "mode": mode, "T": T, "batch": 4096 // T, "flops": flops, "tokens_per_s": 4096 / median,
                "flops_source": "formula"}  # fmt: skip
        return {"stats": {"median": median, "iqr": median / 10}, "extra_info": info}

    speed = {
        "machine_info": {"cpu": {"brand_raw": "Test CPU"}}, "datetime": "2026-11-22T20:00:00",
        "benchmarks": [
            {"stats": {"median": 1.0, "iqr": 0.0}, "extra_info": {"mode": "matmul", "flops": 50e9}},
            timing("sdpa (reference)", "forward_backward", 256, 0.010, 1e8),
            timing("standard", "forward_backward", 256, 0.011, 1e8),
            timing("alibi", "forward_backward", 256, 0.012, 1e8),
            timing("standard", "train_step", 64, 0.02),
        ],
    }  # fmt: skip
    (tmp_path / "speed.json").write_text(json.dumps(speed))
    text = write_report(sweep, tmp_path / "out", speed_file=tmp_path / "speed.json").read_text()
    assert "matmul ceiling of 50.0 GFLOP/s" in text and "Test CPU" in text
    assert "11.00 ms (1.10× sdpa, 18% of peak)" in text and "alibi" not in text, "alibi did not run in this sweep"
    assert figure(tmp_path / "out" / "report.md", "time against T") and figure(tmp_path / "out" / "report.md", "GFLOP/s")
    assert "## Speed" not in write_report(sweep, tmp_path / "none").read_text(), "no speed file of its own: no speed section"
    again = write_report([], tmp_path / "again", baseline=tmp_path / "out").read_text()
    assert "11.00 ms (1.10× sdpa, 18% of peak)" in again, "the timings are kept with the tables: a re-rendered report keeps its speed section"
    speed["benchmarks"] = speed["benchmarks"][1:]  # timed without the matmul ceiling (a -k that left it out)
    (tmp_path / "no_ceiling.json").write_text(json.dumps(speed))
    text = write_report(sweep, tmp_path / "no_ceiling", speed_file=tmp_path / "no_ceiling.json").read_text()
    assert "11.00 ms (1.10× sdpa)" in text and "nan" not in text.split("## Speed")[1].split("## ")[0]
    assert "no share of the matmul ceiling" in text


def test_a_running_record_whose_process_is_gone_reads_as_killed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    here = {"hostname": socket.gethostname()}
    records = [
        result("standard", "copy", 0, 0.0, status="running", pid=int(dead), environment=here),
        result("standard", "copy", 1, 0.0, status="running", pid=os.getpid(), environment=here),
        result("standard", "copy", 2, 0.0, status="running", pid=int(dead), environment={"hostname": "another-machine"}),
    ]
    runs = load_results(write_results(tmp_path / "sweep", records)).runs
    assert runs["status"].tolist() == ["killed", "running", "running"], "alive, or on a machine this one cannot see: running"


def test_steps_to_grok_is_where_smoothed_test_accuracy_starts_to_hold_and_no_single_evaluation_moves_it():
    from bench.report.records import steps_to_grok

    def curve(accuracies):
        return [{"step": 100 * i, "test_accuracy": a} for i, a in enumerate(accuracies)]

    rising = [0.0, 0.01, 0.02, 0.3, 0.96, 0.97, 0.98, 0.99, 0.99, 0.99, 0.99]
    assert steps_to_grok(curve(rising)) == 400
    dip = rising[:8] + [0.71] + rising[9:]  # a full-batch Adam spike after grokking (the 0.987, 0.711, ...)
    assert steps_to_grok(curve(dip)) == 400, "one evaluation knocked down does not move the step"
    blip = [0.0, 0.96, 0.0, 0.01, 0.02, 0.3, 0.96, 0.97, 0.98, 0.99, 0.99, 0.99]  # one early evaluation up
    assert steps_to_grok(curve(blip)) == 600, "one evaluation up does not count as grokked"
    assert steps_to_grok(curve([0.0, 0.2, 0.5, 0.99, 0.4, 0.3])) is None, "it fell back: not grokked"
    assert steps_to_grok(curve(rising[:4])) is None and steps_to_grok([]) is None


def memorising_runs(early_stop: float | None) -> list[dict]:
    records = []
    for seed, late in ((0, 300), (1, 500)):
        record = result("standard", "modular", seed, 0.99, train_set_size=3830)
        record["config"]["train"]["target_accuracy"] = early_stop
        record["curve"] = [{"step": s, "train_accuracy": min(1.0, s / 100), "test_accuracy": 0.99 if s >= late else 0.01,
                            "train_loss": 1 / (s + 1), "test_loss": 0.1 if s >= late else 5.0} for s in range(0, 1000, 100)]  # fmt: skip
        records.append(record)
    return records


def test_a_finite_training_set_trained_past_memorising_gets_grokking_curves_and_steps_to_grok(tmp_path):
    text = write_report(write_results(tmp_path / "sweep", memorising_runs(early_stop=None)), tmp_path / "out").read_text()
    assert figure(tmp_path / "out" / "report.md", "train (dashed) and test (solid) accuracy and loss")
    assert "| standard  | modular |             3830 | 400 [0, 1671] (n=2), grokked 2/2 |" in text
    assert "no target set" in text and "(0/2)" not in text, "runs without a target are not said to have missed it"


def test_a_finite_pool_with_an_early_stop_gets_no_grokking_table(tmp_path):
    """Defect 3 of issue 23: MAD's finite pools, stopped at the target, printed 'grokked 0/2'."""
    text = write_report(write_results(tmp_path / "sweep", memorising_runs(early_stop=0.99)), tmp_path / "out").read_text()
    assert "Grokking" not in text and "grokked" not in text


def difficulty_ladder(tmp_path, score="none"):
    """standard holds up as key-value pairs grow, weak falls off; two seeds, two learning rates."""
    records = []
    for variant, accuracies in (("standard", (1.0, 0.98, 0.9)), ("weak", (0.9, 0.5, 0.1))):
        for pairs, accuracy in zip((4, 8, 16), accuracies):
            for seed in (0, 1):
                for lr, shift in ((0.001, 0.0), (0.01, -0.05)):
                    record = result(variant, "induction", seed, max(0.0, accuracy + shift - 0.01 * seed), lr=lr)
                    record["config"]["task"]["max_segment"] = pairs
                    record["config"]["protocol"] = {"select_on": ["train.lr"], "score": score}
                    record["config_hash"] += f"{pairs}"
                    records.append(record)
    return write_results(tmp_path / "sweep", records)


@pytest.fixture(scope="module")
def ladder_report(tmp_path_factory) -> Path:
    """The report of difficulty_ladder, which several tests read."""
    directory = tmp_path_factory.mktemp("ladder")
    return write_report(difficulty_ladder(directory), directory / "out")


def test_accuracy_is_drawn_against_each_swept_difficulty_axis(ladder_report):
    text = ladder_report.read_text()
    assert "## Where each attention breaks" in text and "induction: test accuracy against max_segment" in text
    assert figure(ladder_report, "induction: test accuracy against max_segment")
    assert "## Leaderboard" not in text


def test_axes_that_only_vary_together_get_no_figure_of_single_points_but_a_sentence(tmp_path):
    records = []
    for (p, fraction), accuracy in (((59, 0.5), 0.99), ((113, 0.3), 0.97)):
        for seed in (0, 1):
            record = result("standard", "modular_addition", seed, accuracy)
            record["config"]["task"].update(p=p, vocab_size=p + 1, train_fraction=fraction)
            record["config_hash"] += f"{p}"
            records.append(record)
    out = tmp_path / "out"
    text = write_report(write_results(tmp_path / "sweep", records), out).read_text()
    assert "modular_addition: p never varies with train_fraction held fixed (points: p=59 train_fraction=0.5; p=113 train_fraction=0.3)" in text
    assert not figure(out / "report.md", "test accuracy against"), "one point per panel is no line"


def test_an_experiment_with_the_mad_protocol_gets_a_leaderboard_of_mean_selected_test_accuracy(tmp_path):
    text = write_report(difficulty_ladder(tmp_path, score="mad"), tmp_path / "out").read_text()
    board = text.split("## Leaderboard")[1].split("## Findings")[0]
    # standard: seed 0 mean(1.0, 0.98, 0.9) = 0.96, seed 1 0.95; weak: 0.5 and 0.49 (the lr 0.001 runs are chosen)
    assert "|      1 | standard | 0.955 [0.891, 1.000] (n=2) | 2/2            | 3/3        |" in board
    assert "|      2 | weak     | 0.495 [0.431, 0.559] (n=2) | 2/2            | 3/3        |" in board


def test_variants_are_ranked_only_at_the_same_difficulty_point_and_each_gets_where_it_breaks(ladder_report):
    text = ladder_report.read_text().split("## Overview")[0]
    # at the chosen lr 0.001: standard 1.0/0.99, 0.98/0.97, 0.9/0.89; weak 0.9/0.89, 0.5/0.49, 0.1/0.09
    verdicts = text.split("## Verdicts")[1].split("## ")[0]
    assert "| variant   |   parameters | induction max_segment=4         | induction max_segment=8         | induction max_segment=16        |" in verdicts
    assert "| standard  |        1,000 | 0.995 solves (all seeds)        | 0.975 solves (all seeds)        | 0.895 not established (untuned) |" in verdicts
    pairs = ladder_report.read_text().split("## Appendix: pairwise comparisons")[1]
    assert "max_segment=4 vs" not in text and "standard max_segment" not in text, "no race across difficulty points"
    assert "| induction | max_segment=16 | standard | weak     | test accuracy |" in pairs
    # a single learning rate per point: no negative verdict, so nowhere "breaks"
    assert ("- induction: standard along max_segment (below 0.9 marks where it breaks): 0.995 (4) → 0.975 (8) → 0.895 (not established) (16): "
            "holds wherever established.") in text  # fmt: skip
    assert "- induction: weak along max_segment (below 0.9 marks where it breaks): 0.895 (not established) (4)" in text
    assert "not established throughout" in text


def test_the_mad_leaderboard_counts_each_task_and_setting_once(tmp_path):
    records = [json.loads((path / "result.json").read_text()) for path in sorted(difficulty_ladder(tmp_path).iterdir())]
    for record in records[:]:
        twin = json.loads(json.dumps(record))
        twin["task"] = twin["config"]["task"]["name"] = "copy"
        twin["config_hash"] += "copy"
        records.append(twin)
    for record in records:
        record["config"]["protocol"]["score"] = "mad"
    text = write_report(write_results(tmp_path / "two_tasks", records), tmp_path / "out").read_text()
    assert "|      1 | standard | 0.955 [0.891, 1.000] (n=2) | 2/2            | 6/6        |" in text


def mad_records(tmp_path) -> list[dict]:
    """The ladder's induction runs (3 settings) beside copy at one of them (1 setting), under MAD's score."""
    records = [json.loads((path / "result.json").read_text()) for path in sorted(difficulty_ladder(tmp_path, score="mad").iterdir())]
    for record in [r for r in records if r["config"]["task"]["max_segment"] == 4]:
        twin = json.loads(json.dumps(record))
        twin["task"] = twin["config"]["task"]["name"] = "copy"
        twin["config_hash"] += "copy"
        records.append(twin)
    return records


def test_the_mad_score_is_the_mean_over_tasks_of_each_tasks_mean_over_its_settings(tmp_path):
    """Defect 2 of issue 23: a flat mean over task x setting weighed induction 3/4 and copy 1/4."""
    text = write_report(write_results(tmp_path / "merged", mad_records(tmp_path)), tmp_path / "out").read_text()
    # standard, seed 0: induction (1.0 + 0.98 + 0.9) / 3 = 0.96, copy 1.0: (0.96 + 1.0) / 2 = 0.98 (the flat mean: 0.97);
    # seed 1: (0.95 + 0.99) / 2 = 0.97
    assert "|      1 | standard | 0.975 [0.911, 1.000] (n=2) | 2/2            | 4/4        |" in text


def test_a_seed_that_lacks_a_setting_gets_no_mad_score_rather_than_a_mean_over_fewer(tmp_path):
    records = mad_records(tmp_path)
    for record in records:
        if (record["variant"], record["task"], record["seed"], record["config"]["task"]["max_segment"]) == ("standard", "induction", 1, 16):
            record.update(status="failed", error="RuntimeError: boom")
    text = write_report(write_results(tmp_path / "merged", records), tmp_path / "out").read_text()
    assert "|      1 | standard | 0.980 (n=1)                | 1/2            | 3/4        |" in text


def test_an_integer_option_that_some_tasks_lack_is_labelled_as_written():
    runs = pd.DataFrame({"variant": ["standard", "standard"], "task.num_tokens_to_copy": [4.0, None]})
    assert list(setting_labels(runs, ["task.num_tokens_to_copy"])) == ["standard task.num_tokens_to_copy=4", "standard"]


def test_over_a_difficulty_ladder_the_summary_has_a_row_per_point_and_a_column_per_model(ladder_report):
    text = ladder_report.read_text()
    summary = text.split("## Summary")[1].split("*Figure")[0]
    rows = [line for line in summary.splitlines() if line.startswith("| induction")]
    assert [row.split("|")[2].strip() for row in rows] == ["max_segment=4", "max_segment=8", "max_segment=16"]
    header = next(line for line in summary.splitlines() if line.startswith("| task"))
    assert [cell.strip() for cell in header.split("|")[1:-1]] == ["task", "point", "standard", "weak"]
    assert [cell.strip() for cell in rows[0].split("|")[3:5]] == ["0.995 [0.931, 1.000] (n=2)", "0.895 [0.831, 0.959] (n=2)"]


def test_the_time_of_a_tuned_sweep_is_split_into_tuning_confirming_and_extensions(tmp_path):
    records = []
    for lr, seconds, steps in ((0.001, 100.0, 2000), (0.003, 400.0, 8000)):  # seed 0 tunes; 0.003 ran four times its budget
        records.append(result("standard", "copy", 0, 0.99 if lr == 0.003 else 0.5, lr=lr, wall_time_s=seconds, steps_run=steps))
    for seed in (1, 2):  # the other seeds confirm at the chosen 0.003
        records.append(result("standard", "copy", seed, 0.98, lr=0.003, wall_time_s=36.0, steps_run=2000))
    for record in records:
        record["config"]["train"]["steps"] = 2000
    text = write_report(write_results(tmp_path / "sweep", records), tmp_path / "out").read_text()
    cost = text.split("## Where the time went")[1].split("\n## ")[0]
    assert "4 jobs, 0.16 job-hours" in cost
    # tuning: 500 s, of which 300 s past the base budget (400 s x 6,000 of 8,000 steps); confirming 72 s
    assert "| tuning     |      2 |        0.14 |               1 |                     0.08 |               0.874 |" in cost
    assert "| confirming |      2 |        0.02 |               0 |                     0    |               0.126 |" in cost


def test_a_second_look_chooses_on_every_seed_and_is_counted_as_its_own_phase(tmp_path):
    records = [result("standard", "copy", 0, test, lr=lr) for lr, test in ((0.001, 0.98), (0.003, 0.99), (0.01, 0.5))]  # seed 0 prefers 0.003
    records += [result("standard", "copy", seed, 0.10, lr=0.003) for seed in (1, 2)]  # where the other seeds fail
    records += [result("standard", "copy", seed, 0.97, lr=0.001, wall_time_s=360.0) for seed in (1, 2)]  # the runner-up, confirmed too
    text = write_report(write_results(tmp_path / "sweep", records), tmp_path / "out").read_text()
    summary = text.split("## Summary")[1]
    assert "| standard  | model  | 0.973 [0.959, 0.988] (n=3) |" in summary, "the rate all three seeds did best at: 0.001"
    cost = text.split("## Where the time went")[1].split("\n## ")[0]
    assert "| tuning      |      3 |" in cost and "| confirming  |      2 |" in cost and "| second look |      2 |         0.2 |" in cost
