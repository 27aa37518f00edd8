"""The verdict table and the findings at the top of the report: each verdict by its rule, with the
number behind it, and no negative verdict for a run that could not support one."""
from __future__ import annotations

import pytest

from bench.report.build import write_report
from bench.report.records import load_results
from bench.report.sections.base import ReportData
from test_report import figure, result, write_results


def run(variant, task, seed, accuracy, scored=400, budget="converged", control=False, lr=0.003, steps_to_target=None, **extra):
    record = result(variant, task, seed, accuracy, lr=lr, control=control, **extra)
    record["metrics"]["test"]["scored"] = scored
    record.update(chance_given_context=0.1, budget={"status": budget, "steps": 2000, "extensions": 0, "validation_loss_drop": 0.01})
    if steps_to_target is not None:
        record["steps_to_target"]["test"] = steps_to_target
    return record


def tuned(records):
    """The records plus, for each variant x task, seed 0 at three more rates around the records' 3e-3
    (worse on validation): a tuned grid of four, with the choice inside it."""
    pairs = {(r["variant"], r["task"]) for r in records}
    return records + [run(variant, task, 0, 0.0, lr=lr, validation=0.0) for variant, task in sorted(pairs) for lr in (1e-3, 1e-2, 3e-2)]


def verdicts_of(tmp_path, records):
    results = load_results(write_results(tmp_path / "sweep", tuned(records)))
    table = ReportData(results, [tmp_path / "sweep"], tmp_path).verdicts
    return {(row.model, row.task): (row.verdict, row.reason) for row in table.itertuples()}


def control_runs(task, accuracies):
    return [run("positional", task, seed, accuracy, control=True) for seed, accuracy in enumerate(accuracies)]


def test_a_task_is_solved_when_most_seeds_reach_the_threshold_and_not_established_when_seeds_disagree(tmp_path):
    records = [run("standard", "copy", seed, a) for seed, a in enumerate((1.0, 0.99, 0.97, 0.98, 0.5))]
    records += [run("triple", "copy", seed, a) for seed, a in enumerate((1.0, 0.99, 0.4, 0.5, 0.5))]
    verdicts = verdicts_of(tmp_path, records + control_runs("copy", (0.2,) * 5))
    assert verdicts["standard", "copy"] == ("solves", "4/5 seeds")
    assert verdicts["triple", "copy"] == ("not established", "seeds disagree")


def test_a_run_still_improving_or_tuned_on_a_grid_edge_is_never_said_to_fail(tmp_path):
    records = [run("standard", "copy", seed, 0.11, budget="still improving" if seed == 0 else "converged") for seed in range(3)]
    verdicts = verdicts_of(tmp_path, records + control_runs("copy", (0.1, 0.1, 0.1)))
    assert verdicts["standard", "copy"] == ("not established", "still improving")
    # the grid 1e-3, 3e-3, 1e-2 on seed 0, with validation best at its top edge
    edge = [run("triple", "copy", 0, 0.1, lr=lr, validation=v) for lr, v in ((1e-3, 0.1), (3e-3, 0.2), (1e-2, 0.3))]
    edge += [run("triple", "copy", seed, 0.1, lr=1e-2, validation=0.3) for seed in (1, 2)]
    results = load_results(write_results(tmp_path / "edge", edge + control_runs("copy", (0.1, 0.1, 0.1))))
    table = ReportData(results, [tmp_path / "edge"], tmp_path).verdicts
    assert table.set_index("model").loc["triple", ["verdict", "reason"]].tolist() == ["not established", "grid edge"]


def test_a_rate_set_rather_than_tuned_supports_no_negative_verdict(tmp_path):
    records = [run("sigmoid", "copy", seed, 0.11) for seed in range(3)]
    results = load_results(write_results(tmp_path / "sweep", records + control_runs("copy", (0.1,) * 3)))
    table = ReportData(results, [tmp_path / "sweep"], tmp_path).verdicts.set_index("model")
    assert table.loc["sigmoid", ["verdict", "reason"]].tolist() == ["not established", "untuned"]


def test_a_lead_over_the_control_too_small_to_resolve_is_not_established_and_a_diverged_seed_counts(tmp_path):
    records = [run("alibi", "copy", seed, a) for seed, a in enumerate((0.40, 0.30, 0.45))]
    records += [run("standard", "copy", seed, 0.99) for seed in range(3)] + [result("standard", "copy", 3, 0.0, status="diverged")]
    records[-1]["metrics"]["test"]["scored"] = 400
    verdicts = verdicts_of(tmp_path, records + control_runs("copy", (0.38, 0.31, 0.40)))
    assert verdicts["alibi", "copy"] == ("not established", "vs control")
    assert verdicts["standard", "copy"] == ("not established", "seeds disagree"), "3 of 4 seeds: a diverged seed did not solve it"


def test_at_chance_is_a_binomial_test_against_the_chance_given_the_context(tmp_path):
    # chance 0.1: 0.11 of 400 scored is within chance (p ~ 0.3); 0.16 of 400 is far above it (p ~ 1e-4)
    records = [run("sigmoid", "copy", seed, 0.11) for seed in range(3)] + [run("nope", "copy", seed, 0.16) for seed in range(3)]
    verdicts = verdicts_of(tmp_path, records)
    assert verdicts["sigmoid", "copy"] == ("at chance", "chance")
    assert verdicts["nope", "copy"] == ("partial", "no control"), "above chance; with no control in the sweep, said so"


def test_a_model_that_does_not_beat_the_control_on_paired_seeds_is_said_so(tmp_path):
    records = [run("nope", "copy", seed, a) for seed, a in enumerate((0.27, 0.40, 0.35))]
    records += [run("alibi", "copy", seed, a) for seed, a in enumerate((0.31, 0.43, 0.38))]
    verdicts = verdicts_of(tmp_path, records + control_runs("copy", (0.29, 0.41, 0.35)))
    assert verdicts["nope", "copy"] == ("no better than control", "control")
    # alibi is above the control in every seed by 0.02-0.03: the paired test resolves what an unpaired one could not
    assert verdicts["alibi", "copy"] == ("partial", "above chance")
    assert verdicts["positional", "copy"][0] == "partial"


def test_values_at_the_ceiling_are_compared_on_steps_to_target_and_pairs_go_to_the_appendix(tmp_path):
    records = [run("standard", "copy", seed, 0.995, steps_to_target=s) for seed, s in enumerate((300, 320, 310))]
    records += [run("triple", "copy", seed, 0.996, steps_to_target=s) for seed, s in enumerate((600, 650, 640))]
    results = load_results(write_results(tmp_path / "sweep", tuned(records + control_runs("copy", (0.2, 0.2, 0.2)))))
    pairs = ReportData(results, [tmp_path / "sweep"], tmp_path).pairs
    pair = pairs[(pairs["first"] == "triple") & (pairs["second"] == "standard")].iloc[0]
    assert pair["measure"] == "steps to target" and pair["resolved"] and pair["test"] == "paired t-test"
    text = write_report(tmp_path / "sweep", tmp_path / "out").read_text()
    assert text.index("## Verdicts") < text.index("## Findings") < text.index("## Appendix: pairwise comparisons")
    findings = text.split("## Findings")[1].split("##")[0]
    assert "- copy: solves: triple (0.996), standard (0.995). The control positional reaches 0.200 (" in findings
    assert "triple vs standard on steps to target: difference 320, paired t-test p \\< 0.001 (n = 3) (resolved)." in findings
    assert "unresolved" not in findings


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("findings")
    records = [run("standard", "copy", seed, a) for seed, a in enumerate((1.0, 0.96, 0.98))]
    records += [run("handcoded_induction", "copy", seed, 0.45, trained=False) for seed in range(2)]
    records += control_runs("copy", (1.0, 1.0))
    return write_report(write_results(tmp_path / "sweep", records), tmp_path / "out")


def test_constructed_variants_are_references_and_the_verdicts_are_drawn(report):
    text = report.read_text()
    cells = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]] for line in text.splitlines()
             if line.startswith("| ") and "(" in line.split("|")[1]}  # fmt: skip
    assert cells["handcoded_induction (constructed)"] == ["1,000", "0.450 reference (constructed)"], "parameters, then the cell"
    assert cells["positional (control)"] == ["1,000", "1.000 solves (all seeds)"]
    assert len(figure(report, "Verdict per variant")) > 5_000


def test_one_model_under_two_names_is_flagged_and_not_ranked_twice():
    import pandas as pd

    from bench.report.verdicts import identical_models, pairwise

    def runs(model, accuracies, steps=(500, 600)):
        return [{"model": model, "role": "model", "task": "copy", "point": "", "seed": seed, "test_accuracy": accuracy,
                 "test_loss": 1 - accuracy, "steps_run": step, "steps_to_target": None} for seed, (accuracy, step) in enumerate(zip(accuracies, steps))]  # fmt: skip

    points = pd.DataFrame(runs("standard", [0.9, 0.8]) + runs("sliding_window", [0.9, 0.8]) + runs("sigmoid", [0.9, 0.8], steps=(500, 700)))
    assert identical_models(points) == ["sliding_window = standard on copy"], "same numbers but other steps: another model"
    pairs = {(row.first, row.second) for row in pairwise(points).itertuples()}
    assert {("standard", "sliding_window"), ("sliding_window", "standard")}.isdisjoint(pairs) and len(pairs) == 2
