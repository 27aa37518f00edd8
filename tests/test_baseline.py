"""A new variant's runs beside a committed report's (`python -m bench.report <sweep> --baseline
<report>`): one report without re-training the baselines, refused in one line where the two were
made under other definitions; and the composition null's cross-run scores, which need the runs'
tensors, travel with the report's tables so that its runs keep their null as a baseline."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from analyses.composition import best_scores
from bench.core.measure import write_output, write_tensors
from bench.report.__main__ import SHIPPED_BASELINES, main
from bench.report.build import write_report
from bench.report.records import load_tables
from tests.test_report import result, write_results


REPO = Path(__file__).resolve().parent.parent
CODE = {"core": "c0re", "tasks": "ta5k", "variants": "any"}


def run_record(variant, seed, accuracy, **config):
    record = result(variant, "induction", seed, accuracy, code={**CODE, "variants": variant})
    record["config"]["model"] = {"d_model": 64, "n_layers": 2, **config}
    return record


def with_composition(job_dir, seed):
    """A composition output whose rows and tensors differ per seed, as a trained run's would."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {name: torch.randn(4, 8, 8, generator=generator) for name in ("OV_0", "Q_0", "OV_1", "Q_1")}
    rows = [{"left": f"L0H{a}", "right": f"L1H{b}", "left_layer": 0, "right_layer": 1, "mode": mode, "score": 0.1 + 0.01 * (a + b + seed)}
            for a in range(4) for b in range(4) for mode in ("K", "Q", "V")]  # fmt: skip
    write_output(job_dir, {"analysis": "composition", "status": "completed", "rows": rows})
    write_tensors(job_dir, "composition", tensors)
    return tensors


def ship(directory: Path, **train) -> tuple[Path, dict]:
    """A committed report of standard (3 seeds, composition tensors in its sweep), and the tensors."""
    records = {f"s{seed}": run_record("standard", seed, 0.9 + 0.01 * seed) for seed in range(3)}
    for record in records.values():
        record["config"]["train"].update(train)
    sweep = write_results(directory / "zoo_sweep", records)
    tensors = {seed: with_composition(sweep / f"s{seed}", seed) for seed in range(3)}
    write_report(sweep, directory / "zoo")
    return directory / "zoo", tensors


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    return ship(tmp_path_factory.mktemp("shipped"))


def test_a_new_variants_runs_stand_beside_a_committed_reports_without_retraining_them(shipped, tmp_path):
    report, _ = shipped
    mine = write_results(tmp_path / "mine", {f"m{seed}": run_record("my_attention", seed, 0.5) for seed in range(3)})
    main([str(mine), "--baseline", str(report), "--out", str(tmp_path / "both")])
    text = (tmp_path / "both" / "report.md").read_text()
    assert "beside the baseline zoo" in text
    runs = load_tables(tmp_path / "both").runs
    assert sorted(runs["variant"].unique()) == ["my_attention", "standard"]
    assert runs.loc[runs["variant"] == "standard", "run"].str.startswith("zoo/").all(), "the baseline's runs keep its name"
    assert "| standard " in text and "| my_attention " in text


def test_a_sweep_re_read_beside_a_baseline_that_holds_its_runs_keeps_its_own_records(shipped, tmp_path):
    """reports/zoo is re-rendered from multirun/zoo_rest beside itself: the runs both hold are one
    record twice (same config, same finish), and the sweep's copy, which has the run's files, is kept."""
    report, _ = shipped
    for _ in range(2):
        write_report(report.parent / "zoo_sweep", tmp_path / "again", baseline=report)
        tables = load_tables(tmp_path / "again")
        assert sorted(tables.runs["run"]) == ["s0", "s1", "s2"], "each run once, under the sweep's own name"
        assert set(tables.curves["run"]) == set(tables.analyses["composition"]["run"]) == {"s0", "s1", "s2"}, "no rows of the copies"


def test_a_report_re_rendered_beside_itself_names_its_runs_once(shipped, tmp_path):
    """The baseline's runs carry its name once however often the report is re-rendered in place."""
    report, _ = shipped
    mine = write_results(tmp_path / "mine", {f"m{seed}": run_record("my_attention", seed, 0.5) for seed in range(2)})
    both = tmp_path / "zoo"
    write_report(mine, both, baseline=report)
    first = load_tables(both)
    write_report(mine, both, baseline=both)
    again = load_tables(both)
    assert sorted(again.runs["run"]) == sorted(first.runs["run"]) == ["m0", "m1", "zoo/s0", "zoo/s1", "zoo/s2"]
    assert len(again.curves) == len(first.curves) and len(again.analyses["composition"]) == len(first.analyses["composition"])


def test_the_composition_null_across_seeds_travels_with_the_tables_and_serves_the_baseline(shipped, tmp_path):
    report, tensors = shipped
    across = pd.read_parquet(report / "analysis_composition.across.parquet")
    expected = best_scores(tensors[0], tensors[1])["K"]
    hashes = {seed: f"standardinduction{seed}0.003" for seed in range(3)}
    pair = across[(across["run"] == "s0") & (across["other"] == hashes[1]) & (across["mode"] == "K")]
    assert pair["score"].tolist() == pytest.approx([expected]), "seed 0's earlier heads against seed 1's later heads"
    assert len(across) == 3 * 2 * 3, "every ordered pair of the 3 seeds, in each mode"
    before = (report / "report.md").read_text().split("## Composition")[1].split("\n## ")[0]
    null = next(line for line in before.splitlines() if line.startswith("| standard") and "| K " in line)
    assert "(6)" in null, "6 ordered pairs in the null across seeds"

    mine = write_results(tmp_path / "mine", {f"m{seed}": run_record("my_attention", seed, 0.5) for seed in range(2)})
    write_report(mine, tmp_path / "both", baseline=report)  # no tensors of the baseline's runs here
    after = (tmp_path / "both" / "report.md").read_text().split("## Composition")[1].split("\n## ")[0]
    assert null in after, "the baseline's null, from its saved cross-run rows"


@pytest.mark.parametrize("change, message", [
    ({"d_model": 128}, "induction: model.d_model is 128 here, 64 in the baseline"),
    ({"train_steps": 500}, "induction: train.steps is 500 here, 2000 in the baseline"),
    ({"code_core": "n3w"}, "induction: code_core is n3w here, c0re in the baseline"),
])  # fmt: skip
def test_a_baseline_made_under_other_definitions_is_refused_in_one_line(shipped, tmp_path, capsys, change, message):
    report, _ = shipped
    records = []
    for seed in range(2):
        record = run_record("my_attention", seed, 0.5, **({"d_model": change["d_model"]} if "d_model" in change else {}))
        if "train_steps" in change:
            record["config"]["train"]["steps"] = change["train_steps"]
        if "code_core" in change:
            record["code"]["core"] = change["code_core"]
        records.append(record)
    if "train_steps" in change:  # a baseline whose runs state their steps
        report, _ = ship(tmp_path, steps=2000)
    mine = write_results(tmp_path / "mine", records)
    with pytest.raises(SystemExit) as exit_:
        main([str(mine), "--baseline", str(report), "--out", str(tmp_path / "both")])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_.value.code == 2 and message in error
    assert not (tmp_path / "both").exists(), "nothing written"


def test_a_baseline_that_is_no_report_is_named(tmp_path, capsys):
    mine = write_results(tmp_path / "mine", {"m0": run_record("my_attention", 0, 0.5)})
    with pytest.raises(SystemExit) as exit_:
        main([str(mine), "--baseline", "nosuch"])
    assert exit_.value.code == 2 and "--baseline nosuch: no report there" in capsys.readouterr().err


def test_a_committed_report_is_re_rendered_from_its_saved_runs_alone_in_its_own_directory(shipped, tmp_path):
    """`python -m bench.report --baseline REPORT`: a report made by an older version, re-rendered by this
    one from its tables, with the same runs under the same names (twice gives the same tables)."""
    report, _ = shipped
    copy = tmp_path / "zoo"
    write_report([], copy, baseline=report)  # first into a directory of its own, then in place, twice
    for _ in range(2):
        main(["--baseline", str(copy)])
        runs = load_tables(copy).runs
        pd.testing.assert_frame_equal(runs, load_tables(report).runs)
    text = (copy / "report.md").read_text()
    assert text.startswith("# Report zoo, its saved runs re-rendered") and "| standard " in text


def test_a_report_with_neither_a_sweep_nor_a_baseline_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2 and "name a sweep directory, or --baseline REPORT alone" in capsys.readouterr().err


def test_every_example_report_is_shipped_and_found_by_name_from_any_directory(tmp_path, monkeypatch, capsys):
    """bench/baselines links to ./reports and its tables go into the wheel (pyproject's package-data), so
    `--baseline zoo` works where there is no ./reports, as for a user of the installed package."""
    examples = sorted(path.parent.name for path in (REPO / "reports").glob("*/results.parquet"))
    assert examples and all((SHIPPED_BASELINES / name / "results.parquet").is_file() for name in examples)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["--baseline", "zoo"])  # found in the package, which a re-render must not write into
    assert exit_.value.code == 2 and "re-renders the copy shipped with the package: name the directory to write with --out" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--baseline", "nosuch"])
    assert f"or a shipped one ({', '.join(examples)})" in capsys.readouterr().err
