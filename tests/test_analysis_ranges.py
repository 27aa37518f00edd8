"""The range contract: every value an analysis reports lies in the range it declares
(Analysis.ranges), for every shipped variant, and in the committed reports."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from analyses import ANALYSES
from bench.core.config import build_model, build_task, compose_config
from bench.core.measure import read_output, run_analyses
from plugin import Range
from plugin.statistics import ROUNDING
from variants import VARIANTS

REPORTS = Path(__file__).resolve().parents[1] / "reports"
# Between them every analysis applies (tests/test_analyses.py holds each to applying somewhere).
SETUPS = {
    "two_layers": ("task=induction", "task.seq_len=32", "task.max_segment=8", "model.max_seq_len=64"),
    "one_layer": ("task=prev_token", "task.seq_len=16", "model.n_layers=1"),
    "modular_addition": ("task=modular_addition", "task.p=11", "task.vocab_size=12", "model.n_layers=1", "model.mlp=true",
                         "model.max_seq_len=3"),
}  # fmt: skip
QUICK = ("+debug=tiny", "analysis.ablation.sequences=8", "analysis.head_scores.probe_sequences=2", "analysis.length_generalisation.factors=[1,2]")


def within(declared: Range, value: float) -> bool:
    """In the range, allowing a float's last bits (a share of 1.0000000000000002)."""
    slack = ROUNDING * max(1.0, *(abs(bound) for bound in (declared.low, declared.high) if math.isfinite(bound)))
    return math.isfinite(value) and declared.low - slack <= value <= declared.high + slack


def out_of_range(rows: pd.DataFrame, declared: dict[str, Range]) -> list[str]:
    """Every value of a declared column outside its range, and every numeric column left undeclared."""
    problems = []
    for column in rows.columns:
        present = rows[column].dropna()
        if present.map(lambda value: isinstance(value, bool)).all():  # a flag, not a value with a range
            continue
        values = pd.to_numeric(present, errors="coerce")
        if values.notna().sum() == 0:
            continue
        if column not in declared:
            problems.append(f"{column}: numeric but no declared range")
            continue
        bad = [value for value in values.dropna() if not within(declared[column], float(value))]
        if bad:
            problems.append(f"{column}: {bad[:3]} outside {declared[column].describe()}")
    return problems


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_analysis_reports_values_inside_its_declared_ranges_on_every_variant(variant, tmp_path):
    measured = 0
    for setup, overrides in SETUPS.items():
        cfg = compose_config([*QUICK, f"variant={variant}", *overrides, *VARIANTS[variant].required_config])
        torch.manual_seed(0)
        try:
            model = build_model(cfg)
        except ValueError:  # a construction that cannot be built at this setup's size says so; others measure it
            continue
        statuses = run_analyses(model, build_task(cfg), cfg, torch.device("cpu"), tmp_path / setup)
        for name, status in statuses.items():
            assert status in ("completed", "not_applicable"), read_output(tmp_path / setup, name)
            if status == "completed":
                rows = pd.DataFrame(read_output(tmp_path / setup, name)["rows"])
                problems = out_of_range(rows, ANALYSES[name]().ranges(cfg))
                assert not problems, f"{name} on {variant} ({setup}): {problems}"
                measured += 1
    assert measured, f"no analysis measured {variant} at any setup"


@pytest.mark.parametrize("path", sorted(REPORTS.glob("*/analysis_*.parquet")), ids=lambda path: f"{path.parent.name}/{path.stem}")
def test_the_committed_reports_values_lie_inside_the_declared_ranges(path):
    name = path.stem.removeprefix("analysis_").split(".")[0]  # composition.across: composition's rows across runs
    declared = ANALYSES[name]().ranges()
    rows = pd.read_parquet(path).drop(columns=["run"])
    assert not out_of_range(rows[[c for c in rows.columns if c in declared]], declared)


def test_a_value_outside_its_range_or_undeclared_is_found():
    rows = pd.DataFrame({"score": [0.5, 1.8], "entropy": [0.1, 0.2], "head": ["L0H0", "L0H1"]})
    assert out_of_range(rows, {"score": Range(0, 1), "entropy": Range(0)}) == ["score: [1.8] outside [0, 1]"]
    assert out_of_range(rows, {"score": Range(0, 2)}) == ["entropy: numeric but no declared range"]
