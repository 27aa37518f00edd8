"""The contract every registered analysis meets, run on tiny trained runs; and `python -m
bench.analyze`, which runs them again from saved weights and reproduces what the jobs recorded."""
from __future__ import annotations

import json
import shutil
import sys

import pytest
from hydra import compose, initialize_config_dir
from safetensors.torch import load_file

from analyses import ANALYSES
from bench.analyze import main as analyze
from bench.core.config import CONF_DIR, CONFIG_NAME
from bench.core.job import run
from bench.core.measure import ANALYSIS_DIR
from bench.report import write_report

RUNS = {  # between them, every registered analysis applies to at least one
    "two_layers": ("task=induction", "task.seq_len=32", "task.max_segment=8"),
    "one_layer": ("task=prev_token", "model.n_layers=1"),
    "triple": ("variant=triple", "task=copy", "model.n_layers=1", "task.seq_len=16"),
    "modular_addition": ("task=modular_addition", "task.p=11", "task.vocab_size=12", "model.n_layers=1", "model.mlp=true",
                         "model.max_seq_len=3"),
}
QUICK = ("+debug=tiny", "train.steps=20", "train.eval_every=10", "train.target_accuracy=null")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sweep")
    for name, overrides in RUNS.items():
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(CONFIG_NAME, overrides=[*QUICK, *overrides])
        assert run(cfg, directory / name, single_run=False, overrides=[])["status"] == "completed"
    return directory


def outputs(directory, name):
    return {run: json.loads((directory / run / ANALYSIS_DIR / f"{name}.json").read_text()) for run in RUNS}


@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_each_analysis_completes_somewhere_and_says_why_not_elsewhere(sweep, name):
    statuses = {run: output["status"] for run, output in outputs(sweep, name).items()}
    assert "completed" in statuses.values(), statuses
    for run, output in outputs(sweep, name).items():
        assert output["status"] in ("completed", "not_applicable"), output.get("error")
        if output["status"] == "not_applicable":
            assert output["reason"]
        assert set(output["identity"]) == {"options", "code"}


@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_each_analysis_writes_tidy_rows_of_json_scalars(sweep, name):
    for output in outputs(sweep, name).values():
        if output["status"] == "completed":
            assert output["rows"] and all(isinstance(row, dict) for row in output["rows"])
            assert all(value is None or isinstance(value, (int, float, str, bool)) for row in output["rows"] for value in row.values())


@pytest.fixture(scope="module")
def report(sweep, tmp_path_factory):
    return write_report(sweep, tmp_path_factory.mktemp("report")).read_text()


@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_each_analysis_opens_with_its_definition_and_has_a_report_section(report, name):
    module = sys.modules[ANALYSES[name].__module__]
    assert len(module.__doc__ or "") > 300, "the file opens with its definition and the paper it follows"
    assert f"\n## {ANALYSES[name].title}\n" in report


def test_bench_analyze_reproduces_every_recorded_number_bit_for_bit(sweep, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(sweep, copy)
    for path in copy.rglob(f"{ANALYSIS_DIR}/*"):
        path.unlink()
    analyze([str(copy), "--no-report"])
    for name in ANALYSES:
        for run in RUNS:
            recorded = json.loads((sweep / run / ANALYSIS_DIR / f"{name}.json").read_text())
            again = json.loads((copy / run / ANALYSIS_DIR / f"{name}.json").read_text())
            assert again.get("rows") == recorded.get("rows") and again["status"] == recorded["status"]
            tensors = sweep / run / ANALYSIS_DIR / f"{name}.safetensors"
            if tensors.exists():
                first, second = load_file(tensors), load_file(copy / run / ANALYSIS_DIR / f"{name}.safetensors")
                assert first.keys() == second.keys() and all((first[k] == second[k]).all() for k in first)


def test_re_running_one_analysis_replaces_its_output_and_nothing_else(sweep, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(sweep, copy)
    before = {path: path.stat().st_mtime_ns for path in copy.rglob("*") if path.is_file()}
    analyze([str(copy), "analysis=head_scores", "--no-report"])
    changed = {path for path in copy.rglob("*") if path.is_file() and before.get(path) != path.stat().st_mtime_ns}
    assert changed == {copy / run / ANALYSIS_DIR / "head_scores.json" for run in RUNS}


def test_bench_analyze_refuses_an_unknown_analysis(sweep, capsys):
    with pytest.raises(SystemExit) as refused:
        analyze([str(sweep), "analysis=head_score"])
    assert refused.value.code == 2 and "unknown analysis 'head_score'; allowed: " in capsys.readouterr().err


def test_the_qk_offset_declines_a_context_where_uniform_attention_looks_like_a_previous_token_head(sweep):
    declined, measured = outputs(sweep, "qk_offset")["modular_addition"], outputs(sweep, "qk_offset")["one_layer"]
    assert declined["status"] == "not_applicable" and "uniform attention puts 0.42" in declined["reason"], declined
    assert measured["status"] == "completed", "prev_token's context tells a previous-token head from an even spread"
