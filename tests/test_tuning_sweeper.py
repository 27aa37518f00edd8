"""The tuning sweeper (hydra/sweeper=tuning): the grid on the tuning seed, extended past an edge until
the optimum is bracketed or the limit is hit, then the other seeds at the point chosen on validation.
Driven here through a launcher that scores each job by a known function of its learning rate, so that
the right choice is known; a real sweep runs it in tests/test_sweep.py and the slow tests."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest
from omegaconf import OmegaConf

from bench import ConfigError
from bench.report.protocol import tuning_grid
from hydra_plugins.bench_sweeper.tuning_sweeper import TuningSweeper, extended


class ScoringLauncher:
    """Records every batch; a job's validation accuracy is score(lr, seed, overrides)."""

    def __init__(self, score):
        self.score, self.batches = score, []

    def launch(self, job_overrides, initial_job_idx):
        self.batches.append([list(job) for job in job_overrides])
        returns = []
        for job in job_overrides:
            values = dict(override.split("=", 1) for override in job)
            accuracy = self.score(float(values["train.lr"]), int(values["seed"]), values)
            status = "failed" if accuracy is None else "completed"
            returns.append(SimpleNamespace(return_value={"status": status, "validation_accuracy": accuracy, "validation_loss": 1 - (accuracy or 0)}))
        return returns


def sweep(score, grid=(1e-5, 1e-4, 1e-3, 1e-2), max_extensions=2, params=None, arguments=(), tuning_seeds=1, max_batch_size=None):
    sweeper = TuningSweeper(params=params or {"variant": "standard,triple", "seed": "0,1,2"}, tune={"train.lr": list(grid)},
                            max_extensions=max_extensions, tuning_seeds=tuning_seeds, max_batch_size=max_batch_size)  # fmt: skip
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": "unused", "subdir": "${hydra.job.num}"}}})
    sweeper.hydra_context = SimpleNamespace(config_loader=None)
    sweeper.launcher = launcher = ScoringLauncher(score)
    sweeper.validate_batch_is_legal = lambda batch: None
    sweeper.sweep(list(arguments))
    return launcher.batches


def job_values(batches):
    """Each launched job's overrides as {key: value}, in launch order."""
    return [dict(override.split("=", 1) for override in job) for batch in batches for job in batch]


def lrs(batch, variant="standard", seed="0"):
    return sorted(float(values["train.lr"]) for values in job_values([batch]) if values["variant"] == variant and values["seed"] == seed)


def peaked_at(best):
    return lambda lr, seed, values: 1 - abs(math.log10(lr / best)) / 10


def test_a_choice_on_the_grids_edge_extends_the_grid_until_the_optimum_is_bracketed():
    batches = sweep(peaked_at(0.1))
    assert lrs(batches[0]) == [1e-5, 1e-4, 1e-3, 1e-2]
    assert lrs(batches[1]) == [0.1], "one step of the grid's ratio past the top edge"
    assert lrs(batches[2]) == [1.0], "0.1 is still the edge; one more step brackets it"
    confirm = batches[3]
    assert lrs(confirm, seed="1") == lrs(confirm, seed="2") == [0.1] and lrs(confirm, seed="0") == []
    assert len(batches) == 4


def test_the_extension_stops_at_its_limit_and_each_group_is_tuned_on_its_own():
    def score(lr, seed, values):  # standard always prefers a larger rate; triple peaks inside the grid
        return lr / 10 if values["variant"] == "standard" else peaked_at(1e-3)(lr, seed, values)

    batches = sweep(score, max_extensions=1)
    assert lrs(batches[1]) == [0.1] and lrs(batches[1], variant="triple") == []
    assert len(batches) == 3, "the limit of one step past each edge ends the tuning"
    assert lrs(batches[2], seed="1") == [0.1] and lrs(batches[2], variant="triple", seed="1") == []
    assert lrs(batches[1], variant="triple", seed="1") == [1e-3], "triple, bracketed at once, is confirmed beside standard's extension"


def jobs_of(batches, variant):
    """(rate, seed) of every job the variant ran, in order of rate."""
    return sorted((float(values["train.lr"]), values["seed"]) for values in job_values(batches) if values["variant"] == variant)


def test_each_group_runs_the_jobs_it_would_run_alone_in_as_many_batches_as_its_longest_protocol():
    seed_0 = {1e-5: 0.5, 1e-4: 0.98, 1e-3: 0.99, 1e-2: 0.3}

    def score(lr, seed, values):  # standard: two steps past the top edge; triple: seeds 1 and 2 fail at seed 0's choice
        if values["variant"] == "standard":
            return peaked_at(0.1)(lr, seed, values)
        return seed_0[lr] - (0.89 if seed and lr == 1e-3 else 0.0)

    together = sweep(score)
    alone = {variant: sweep(score, params={"variant": variant, "seed": "0,1,2"}) for variant in ("standard", "triple")}
    assert [len(batches) for batches in alone.values()] == [4, 3], "tune, two extensions, confirm; tune, confirm, second look"
    assert len(together) == max(len(batches) for batches in alone.values())
    for variant, batches in alone.items():
        assert jobs_of(together, variant) == jobs_of(batches, variant)
    assert lrs(together[2], variant="triple", seed="1") == [1e-4] and lrs(together[2]) == [1.0], "triple's second look beside standard's extension"


def test_with_two_tuning_seeds_a_failed_job_and_small_batches_each_group_still_runs_its_own_jobs():
    def score(lr, seed, values):  # triple's job at 1e-3 on tuning seed 1 fails; standard peaks past the grid's top
        if values["variant"] == "triple":
            return None if (lr, seed) == (1e-3, 1) else peaked_at(1e-3)(lr, seed, values)
        return peaked_at(0.1)(lr, seed, values)

    options = {"tuning_seeds": 2, "max_batch_size": 2}
    together = sweep(score, params={"variant": "standard,triple", "seed": "0,1,2,3"}, **options)
    for variant in ("standard", "triple"):
        alone = sweep(score, params={"variant": variant, "seed": "0,1,2,3"}, **options)
        assert jobs_of(together, variant) == jobs_of(alone, variant)
    assert max(len(batch) for batch in together) == 2
    assert [lr for lr, seed in jobs_of(together, "standard") if seed == "3"] == [0.1]


def test_a_failed_job_is_never_chosen_and_ties_go_to_the_lower_validation_loss():
    batches = sweep(lambda lr, seed, values: None if lr == 1e-3 else 0.5, grid=(1e-4, 1e-3, 1e-2, 1e-1), max_extensions=0)
    assert lrs(batches[-1], seed="1") != [1e-3]


def lucky_on_the_tuning_seed(drop):
    """Seed 0 prefers 1e-2 by a hair; at 1e-2 the other seeds lose `drop` of their accuracy."""
    accuracy = {1e-4: 0.5, 1e-3: 0.98, 1e-2: 0.99, 1e-1: 0.3}
    return lambda lr, seed, values: accuracy[lr] - (drop if seed > 0 and lr == 1e-2 else 0.0)


def report_runs(batches, score):
    """The sweep's jobs as the report reads them: one row per job, with the objective the launcher returned."""
    rows = []
    for values in job_values(batches):
        accuracy = score(float(values["train.lr"]), int(values["seed"]), values)
        rows.append({"group": 0, "train.lr": float(values["train.lr"]), "seed": int(values["seed"]),
                     "status": "failed" if accuracy is None else "completed", "validation_accuracy": accuracy,
                     "validation_loss": None if accuracy is None else 1 - accuracy})  # fmt: skip
    return pd.DataFrame(rows)


def chosen_rate(runs):
    grid = tuning_grid(runs, ["group"], ["train.lr"])
    return grid.loc[grid["chosen"], "train.lr"].tolist()


def test_seeds_that_disagree_at_the_chosen_rate_send_the_runner_up_to_every_seed_and_the_report_chooses_alike():
    score = lucky_on_the_tuning_seed(drop=0.89)
    launcher_batches = sweep(score, grid=(1e-4, 1e-3, 1e-2, 1e-1), params={"variant": "standard", "seed": "0,1,2"})
    assert len(launcher_batches) == 3
    assert lrs(launcher_batches[1], seed="1") == [1e-2], "confirmed where seed 0 chose"
    assert lrs(launcher_batches[2], seed="1") == lrs(launcher_batches[2], seed="2") == [1e-3] and lrs(launcher_batches[2]) == []
    runs = report_runs(launcher_batches, score)
    assert chosen_rate(runs) == [1e-3], "the report compares the two confirmed rates on every seed"
    grid = tuning_grid(runs, ["group"], ["train.lr"])
    assert grid.loc[grid["train.lr"] == 1e-2, "validation_accuracy"].item() == pytest.approx(0.99), "the grid still shows the tuning seed's numbers"


def test_seeds_within_the_margin_of_the_runner_up_get_no_second_look():
    just_inside, just_outside = (lucky_on_the_tuning_seed(drop=drop) for drop in (0.085, 0.095))  # the mean over 3 seeds crosses 0.98 - 0.05 at 0.09
    assert len(sweep(just_inside, grid=(1e-4, 1e-3, 1e-2, 1e-1), params={"variant": "standard", "seed": "0,1,2"})) == 2
    assert len(sweep(just_outside, grid=(1e-4, 1e-3, 1e-2, 1e-1), params={"variant": "standard", "seed": "0,1,2"})) == 3


def test_a_second_look_that_lands_on_an_edge_goes_one_step_further_on_every_seed():
    seed_0 = {1e-4: 0.5, 1e-3: 0.6, 1e-2: 0.99, 1e-1: 0.98, 1.0: 0.97, 10.0: 0.2}
    others = {**seed_0, 1e-2: 0.1, 1.0: 0.99}  # fail at seed 0's choice; best one step past the grid's top

    def score(lr, seed, values):
        return (others if seed else seed_0)[lr]

    batches = sweep(score, grid=(1e-4, 1e-3, 1e-2, 1e-1), params={"variant": "standard", "seed": "0,1,2"})
    assert [lrs(batch, seed="2") for batch in batches[1:]] == [[1e-2], [1e-1], [1.0], [10.0]]
    assert lrs(batches[3], seed="0") == [1.0], "the step past the edge runs on the tuning seed as well"
    assert len(batches) == 5, "1.0 is bracketed by 10: no further step"
    assert chosen_rate(report_runs(batches, score)) == [1.0]


def runs_of(*rows):
    return pd.DataFrame([{"group": 0, "train.lr": lr, "seed": seed, "status": "completed" if accuracy is not None else "failed",
                          "validation_accuracy": accuracy, "validation_loss": None if accuracy is None else 1 - accuracy}
                         for lr, seed, accuracy in rows])  # fmt: skip


def test_after_a_second_look_only_the_confirmed_rates_are_chosen_and_a_failed_job_does_not_undo_it():
    tuning = [(1e-3, 0, 0.98), (3e-3, 0, 0.99), (1e-2, 0, 0.975)]  # 1e-2, tried on seed 0 alone, beats 1e-3's mean over every seed
    assert chosen_rate(runs_of(*tuning, (3e-3, 1, 0.1), (3e-3, 2, 0.1), (1e-3, 1, 0.95), (1e-3, 2, 0.95))) == [1e-3]
    assert chosen_rate(runs_of(*tuning, (3e-3, 1, 0.1), (3e-3, 2, None), (1e-3, 1, 0.95), (1e-3, 2, 0.95))) == [1e-3]


def test_a_failed_job_in_a_full_grid_is_no_second_look():
    # every seed at every rate: seed 1's job at 1e-2 failed, and 1e-2 stays the best on the seeds that scored
    full = [(lr, seed, accuracy) for lr, accuracy in ((1e-3, 0.9), (3e-3, 0.95), (1e-2, 0.99)) for seed in (0, 1)]
    assert chosen_rate(runs_of(*[(lr, seed, None if (lr, seed) == (1e-2, 1) else accuracy) for lr, seed, accuracy in full])) == [1e-2]


def test_with_two_tuning_seeds_and_a_failed_tuning_job_the_sweeper_confirms_what_the_report_chooses():
    def score(lr, seed, values):
        if (lr, seed) == (1e-2, 1):
            return None
        return {1e-4: 0.5, 1e-3: 0.9, 1e-2: 0.95, 1e-1: 0.3}[lr]

    batches = sweep(score, grid=(1e-4, 1e-3, 1e-2, 1e-1), params={"variant": "standard", "seed": "0,1,2,3"}, tuning_seeds=2)
    confirmed = lrs(batches[-1], seed="2")
    assert confirmed == lrs(batches[-1], seed="3") and len(confirmed) == 1
    assert chosen_rate(report_runs(batches, score)) == confirmed == [1e-2]


def test_a_rate_the_command_line_sets_is_not_tuned():
    batches = sweep(peaked_at(0.1), arguments=["train.lr=0.003"])
    assert len(batches) == 1, "nothing to tune: every seed in one batch, as parallel as the launcher allows"
    assert lrs(batches[0]) == lrs(batches[0], seed="2") == [0.003]


def test_the_next_value_keeps_the_grids_log_spacing():
    assert extended([3e-4, 1e-3, 3e-3, 1e-2], low_edge=False) == pytest.approx(0.0322, rel=1e-2)
    assert extended([1e-4, 1e-3, 1e-2, 1e-1], low_edge=True) == pytest.approx(1e-5)


@pytest.mark.parametrize("tune, problem", [({"train.lr": [1e-3, 1e-2, 1e-1]}, "cannot bracket an optimum"),
                                           ({"train.lr": [0.0, 1e-3, 1e-2, 1e-1]}, "cannot bracket an optimum"),
                                           ({"train.lr": [1e-3, 1e-3, 1e-2, 1e-1]}, "cannot bracket an optimum"),
                                           ({"train.lr": [1e-4, 1e-3, 2e-3, 1e-1]}, "is not log-spaced"),
                                           ({"train.lr": ["fast", 1e-3, 1e-2, 1e-1]}, "is not a list of numbers")])
def test_a_grid_that_cannot_bracket_is_refused_in_one_line(tune, problem):
    with pytest.raises(ConfigError, match=f"hydra.sweeper.tune.train.lr=.* {problem}.*; allowed: at least 4 distinct positive numbers, log-spaced"):
        TuningSweeper(params={}, tune=tune, max_extensions=2, tuning_seeds=1, max_batch_size=None)


def test_a_rate_that_does_not_matter_is_chosen_mid_grid_and_never_extended():
    batches = sweep(lambda lr, seed, values: 0.5, grid=(1e-4, 1e-3, 1e-2, 1e-1, 1.0))
    assert len(batches) == 2 and lrs(batches[1], seed="1") == [1e-2], "an untrained reference ties everywhere"


def test_a_tuned_key_the_report_does_not_select_on_is_refused(make_config):
    from hydra import initialize_config_dir

    from bench import CONF_DIR, CONFIG_NAME
    from bench.cli import check_tuned_keys_are_selected

    make_config()  # registers the project's configs
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        check_tuned_keys_are_selected(["train.lr"], ["variant=standard"], CONFIG_NAME)
        with pytest.raises(ConfigError, match=r"tunes train.weight_decay, which protocol.select_on=\['train.lr'\] does not select on"):
            check_tuned_keys_are_selected(["train.weight_decay"], ["variant=standard"], CONFIG_NAME)
