"""Chance given the context: the expected accuracy of the best guess a model could make without the
ability a task tests, measured on a held-out batch (``Task.chance_given_context``)."""
from __future__ import annotations

import math
import random
import sys

import pytest
import torch

from tasks import IGNORE_INDEX, TASKS, Batch, Task
from tasks.base import uniform_over_context

all_tasks = pytest.mark.parametrize("name", sorted(TASKS))
# Tasks whose context offers no candidate answers keep the context-free chance (Task's default).
CONTEXT_FREE = {"modular_addition"}


def stream(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def overrides(task: Task) -> bool:
    return type(task).chance_given_context is not Task.chance_given_context


@all_tasks
def test_chance_given_the_context_is_a_probability_at_least_the_context_free_chance(name):
    task = TASKS[name]()
    chance = task.chance_given_context(task.evaluation_set("test", 64, stream()))
    assert 0 < chance <= 1
    assert overrides(task) == (name not in CONTEXT_FREE)
    if overrides(task):
        # every override draws from a subset of the context-free answers that always holds the
        # answer, so it never falls below the context-free chance (no task is an exception)
        assert chance >= task.chance_accuracy - 1e-12
    else:
        assert chance == task.chance_accuracy


@all_tasks
def test_every_task_states_its_rule(name):
    assert "Chance given the context" in sys.modules[TASKS[name].__module__].__doc__


@pytest.mark.parametrize("pairs", [1, 3, 8])
@pytest.mark.parametrize("random_fillers", [True, False])
def test_mqar_with_k_distinct_values_is_one_over_k(pairs, random_fillers):
    task = TASKS["assoc_recall"](num_kv_pairs=pairs, random_fillers=random_fillers)
    assert task.chance_given_context(task.sample(128, stream(pairs))) == pytest.approx(1 / pairs, abs=1e-12)


def test_mqar_defaults_give_one_eighth():
    task = TASKS["assoc_recall"]()
    assert task.chance_given_context(task.evaluation_set("test", 64, stream())) == 0.125


def test_mqar_with_several_pair_counts_is_the_mean_of_one_over_k_over_the_queries():
    task = TASKS["assoc_recall"](num_kv_pairs=8, min_kv_pairs=2)
    batch = task.sample(256, stream(1))
    scored = batch.targets != IGNORE_INDEX
    expected = (1 / batch.slices["num_kv_pairs"][scored].double()).mean().item()
    assert task.chance_given_context(batch) == pytest.approx(expected, abs=1e-12)
    assert 1 / 8 < expected < 1 / 2


def test_the_helper_on_a_hand_made_batch():
    # row 0: tokens 1 2 1 3, scored at 3 with target 2: candidates {1, 2, 3}, hit -> 1/3
    # row 1: tokens 5 4 4 4, scored at 1 (target 5) and 3 (target 6): {5, 4} -> 1/2 and 0
    inputs = torch.tensor([[1, 2, 1, 3], [5, 4, 4, 4]])
    targets = torch.full_like(inputs, IGNORE_INDEX)
    targets[0, 3], targets[1, 1], targets[1, 3] = 2, 5, 6
    batch = Batch(inputs, targets)
    assert uniform_over_context(batch, range(8)) == pytest.approx((1 / 3 + 1 / 2 + 0) / 3)
    # counting positions 2 on only: row 0 sees {1, 3}, a miss; row 1 sees nothing at 1, so guesses
    # uniformly over all eight candidates (1/8), then {4} at 3, a miss
    where = torch.arange(4).expand(2, -1) >= 2
    assert uniform_over_context(batch, range(8), where) == pytest.approx((0 + 1 / 8 + 0) / 3)
    # nothing seen: uniform over all candidate tokens, {2, 7} for row 0's target 2
    assert uniform_over_context(Batch(inputs[:1], targets[:1]), [2, 7], torch.zeros(1, 4, dtype=torch.bool)) == 0.5
    with pytest.raises(ValueError, match="no scored position"):
        uniform_over_context(Batch(inputs, torch.full_like(inputs, IGNORE_INDEX)), range(8))


# The guesser, written independently of tasks/: which input positions hold a candidate answer.
def induction_candidates(task, row, slices, j):
    return row[j] != 0  # not BOS


def fixed_copy_candidates(task, row, slices, j):
    return j < len(row) // 2  # the first half is the string to copy


def variable_copy_candidates(task, row, slices, j):
    return row.index(task.vocab_size - 2) < j < row.index(task.vocab_size - 1)  # between $ and |


def mqar_candidates(task, row, slices, j):
    return j % 2 == 1 and j < 2 * slices["num_kv_pairs"][0]  # a value of the prefix's pairs


def value_block(low, high):
    def candidates(task, row, slices, j):
        return low <= row[j] <= high

    return candidates


SIMULATED = [
    ("induction", {}, induction_candidates),
    ("induction", {"layout": "repeat", "seq_len": 33, "vocab_size": 16}, induction_candidates),
    ("copy", {}, fixed_copy_candidates),
    ("copy", {"variable_length": True}, variable_copy_candidates),
    ("assoc_recall", {}, mqar_candidates),
    ("assoc_recall", {"min_kv_pairs": 1, "num_kv_pairs": 6}, mqar_candidates),
    ("in_context_recall", {"seq_len": 64}, value_block(8, 15)),
    ("noisy_recall", {"seq_len": 64}, value_block(8, 15)),
    ("fuzzy_recall", {"seq_len": 64}, value_block(7, 14)),
    ("selective_copy", {"seq_len": 64}, value_block(0, 13)),
    ("prev_token", {}, value_block(0, 15)),
]


@pytest.mark.parametrize(("name", "options", "is_candidate"), SIMULATED, ids=[f"{n}{o or ''}" for n, o, _ in SIMULATED])
def test_a_simulated_guesser_scores_the_chance_given_the_context(name, options, is_candidate):
    task = TASKS[name](**options)
    batch = task.evaluation_set("test", 256, stream(7))
    draws = 8  # guesses per scored position, independent given the batch
    rng = random.Random(0)
    right = guesses = 0
    expected = []
    slices = {key: value.tolist() for key, value in batch.slices.items()}
    for b, (row, targets) in enumerate(zip(batch.inputs.tolist(), batch.targets.tolist())):
        seen: set[int] = set()
        for j, target in enumerate(targets):
            if is_candidate(task, row, {key: value[b] for key, value in slices.items()}, j):
                seen.add(row[j])
            if target == IGNORE_INDEX:
                continue
            assert seen, "every scored position has a candidate in view"
            candidates = sorted(seen)
            expected.append((target in seen) / len(seen))
            right += sum(rng.choice(candidates) == target for _ in range(draws))
            guesses += draws
    chance = task.chance_given_context(batch)
    assert chance == pytest.approx(sum(expected) / len(expected), abs=1e-9), "the plain loop's expectation"
    # the draws are independent Bernoulli trials given the batch, with mean `chance` and a variance at
    # most that of a binomial of that mean: 4.5 standard deviations
    tolerance = 4.5 * math.sqrt(chance * (1 - chance) / guesses) + 1e-9
    assert abs(right / guesses - chance) <= tolerance, f"guesser {right / guesses:.4f} vs {chance:.4f} ± {tolerance:.4f}"
    if name not in ("prev_token",):
        assert chance > task.chance_accuracy, "the context narrows the answers"
