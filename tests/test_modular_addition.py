"""The modular arithmetic task: its docstring example, its labels, and a split that keeps the
training, validation and test pairs apart."""
from __future__ import annotations

import pytest
import torch

from tasks import IGNORE_INDEX, TASKS
from tasks.modular_addition import ModularAddition


def task(**options) -> ModularAddition:
    p = options.get("p", 23)
    return TASKS["modular_addition"](**{"p": p, "vocab_size": p + 1, **options})


def pair_indices(batch, p: int) -> set[int]:
    return set((batch.inputs[:, 0] * p + batch.inputs[:, 1]).tolist())


def test_docstring_example():
    batch = task(p=5).sequences(torch.tensor([3 * 5 + 4]))
    assert batch.inputs.tolist() == [[3, 4, 5]]
    assert batch.targets.tolist() == [[IGNORE_INDEX, IGNORE_INDEX, 2]]


@pytest.mark.parametrize("operation, answer", [("add", lambda a, b: (a + b) % 7), ("sub", lambda a, b: (a - b) % 7), ("mul", lambda a, b: a * b % 7)])
def test_every_pair_is_labelled_with_its_answer_at_equals(operation, answer):
    batch = task(p=7, operation=operation).all_pairs()
    assert len(batch) == 49 and (batch.inputs[:, 2] == 7).all()
    assert (batch.targets[:, :2] == IGNORE_INDEX).all()
    for (a, b, _), target in zip(batch.inputs.tolist(), batch.targets[:, 2].tolist()):
        assert target == answer(a, b)


def test_the_reference_split_has_3830_training_pairs_and_disjoint_halves_held_out():
    reference = TASKS["modular_addition"]()  # p 113, 30 % of the pairs, as Nanda et al.
    train = pair_indices(reference.train_set(), 113)
    validation = pair_indices(reference.evaluation_set("validation", 1, torch.Generator()), 113)
    test = pair_indices(reference.evaluation_set("test", 1, torch.Generator()), 113)
    assert len(train) == 3830 and len(validation) == 4469 and len(test) == 4470
    assert not train & validation and not train & test and not validation & test
    assert train | validation | test == set(range(113 * 113))


def test_the_split_is_fixed_by_split_seed_alone():
    first, again, other = task(split_seed=1), task(split_seed=1), task(split_seed=2)
    assert torch.equal(first.train_set().inputs, again.train_set().inputs)
    assert not torch.equal(first.train_set().inputs, other.train_set().inputs)
    held_out = [first.evaluation_set("test", size, torch.Generator().manual_seed(seed)).inputs for size, seed in ((1, 0), (10**6, 9))]
    assert torch.equal(*held_out), "a held-out split is the whole split, whatever the size and generator"


def test_training_batches_draw_training_pairs_only():
    modular = task(train_fraction=0.2)
    drawn = pair_indices(modular.sample(4096, torch.Generator().manual_seed(0)), 23)
    assert drawn <= pair_indices(modular.train_set(), 23) and len(drawn) > 0.9 * len(modular.train_pairs)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"p": 13, "vocab_size": 114}, r"task.vocab_size=114 does not fit task.p=13; allowed: task.vocab_size=14"),
        ({"seq_len": 6}, r"task.seq_len=6 is not allowed for modular_addition; allowed: 3"),
        ({"operation": "div"}, r"task.operation='div' is unknown; allowed: add, sub, mul"),
        ({"p": 3, "vocab_size": 4, "train_fraction": 0.9}, r"gives 8 of 9 pairs for training; allowed: a fraction giving 1 to 7"),
        ({"p": 3, "vocab_size": 4, "train_fraction": 0.05}, r"gives 0 of 9 pairs"),
    ],
)
def test_impossible_options_are_refused_with_the_allowed_values(options, message):
    with pytest.raises(ValueError, match=message):
        task(**options)
