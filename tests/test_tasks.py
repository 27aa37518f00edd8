"""The contract every registered task meets, and what makes each task the task it claims to be."""
from __future__ import annotations

import pytest
import torch

from tasks import IGNORE_INDEX, TASKS
from tasks.induction import BOS, determined_successors

BATCH = 64


def stream(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


all_tasks = pytest.mark.parametrize("name", sorted(TASKS))


def test_copy_and_induction_are_registered():
    assert {"copy", "induction"} <= set(TASKS)


@all_tasks
def test_shapes_dtypes_and_vocabulary(name):
    task = TASKS[name]()
    inputs, targets = task.sample(BATCH, stream())
    assert inputs.shape == targets.shape == (BATCH, task.seq_len)
    assert inputs.dtype == targets.dtype == torch.int64
    assert 0 <= inputs.min() and inputs.max() < task.vocab_size
    scored = targets != IGNORE_INDEX
    assert scored.any(dim=1).float().mean() > 0.5, "most sequences have something to score"
    assert (targets[scored] < task.vocab_size).all()


@all_tasks
def test_targets_are_the_next_token_where_scored(name):
    inputs, targets = TASKS[name]().sample(BATCH, stream())
    scored = targets[:, :-1] != IGNORE_INDEX
    assert torch.equal(targets[:, :-1][scored], inputs[:, 1:][scored])
    assert (targets[:, -1] == IGNORE_INDEX).all()


@all_tasks
def test_same_generator_state_same_batch_and_streams_differ(name):
    task = TASKS[name]()
    first, second = task.sample(BATCH, stream(3)), task.sample(BATCH, stream(3))
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert not torch.equal(task.sample(BATCH, stream(4))[0], first[0])


def test_fixed_copy_is_the_seed_task():
    inputs, targets = TASKS["copy"](seq_len=32, vocab_size=16).sample(BATCH, stream())
    assert torch.equal(inputs[:, 16:], inputs[:, :16])
    scored = (targets != IGNORE_INDEX).nonzero()[:, 1].unique()
    assert scored.tolist() == list(range(15, 31)), "exactly the predictions of the copied half"


def test_variable_copy_has_no_fixed_offset():
    task = TASKS["copy"](seq_len=32, vocab_size=16, variable_length=True)
    inputs, targets = task.sample(BATCH, stream())
    separator = (inputs == task.separator_token).float().argmax(1)
    start = (inputs == task.start_token).float().argmax(1)
    lengths = separator - start - 1
    assert lengths.unique().numel() > 5 and start.unique().numel() > 5
    for row in range(BATCH):
        s, n = start[row].item(), lengths[row].item()
        string = inputs[row, s + 1 : s + 1 + n]
        assert torch.equal(inputs[row, s + n + 2 : s + 2 * n + 2], string)
        assert torch.equal(targets[row, s + n + 1 : s + 2 * n + 1], string)
        assert (targets[row] != IGNORE_INDEX).sum() == n


def test_induction_docstring_example():
    tokens = torch.tensor([[0, 4, 7, 2, 5, 9, 4, 7, 2, 8, 1, 3]])
    expected = [IGNORE_INDEX] * 6 + [7, 2] + [IGNORE_INDEX] * 4
    assert determined_successors(tokens).tolist() == [expected]


def test_induction_scores_only_determined_positions_at_random_gaps():
    task = TASKS["induction"](seq_len=64, vocab_size=64)
    inputs, targets = task.sample(BATCH, stream())
    assert (inputs[:, 0] == BOS).all() and (inputs[:, 1:] != BOS).all()
    offsets = set()
    for row, position in (targets != IGNORE_INDEX).nonzero().tolist():
        token = inputs[row, position]
        earlier = (inputs[row, :position] == token).nonzero()[:, 0]
        assert len(earlier) > 0
        assert (inputs[row, earlier + 1] == targets[row, position]).all(), "every earlier occurrence agrees"
        offsets.add(position - earlier[-1].item())
    assert len(offsets) > 10, "the repeat distance varies, so no fixed offset solves the task"


def test_induction_probe_is_bos_then_a_random_string_twice():
    task = TASKS["induction"](seq_len=33, vocab_size=1000, layout="repeat")
    inputs, targets = task.sample(BATCH, stream())
    assert (inputs[:, 0] == BOS).all()
    assert torch.equal(inputs[:, 1:17], inputs[:, 17:33])
    assert (targets[:, :17] == IGNORE_INDEX).all(), "nothing before the second copy is determined"
    scored = targets[:, 17:32] != IGNORE_INDEX
    assert scored.float().mean() > 0.95, "with a large vocabulary nearly every second-copy position is unambiguous"


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("copy", {"vocab_size": 1}, "task.vocab_size=1 is too small"),
        ("copy", {"vocab_size": 3, "variable_length": True}, "needs at least 4"),
        ("copy", {"seq_len": 31}, "must be even"),
        ("copy", {"seq_len": 12, "variable_length": True, "max_len": 6}, "max_len <= 5"),
        ("induction", {"vocab_size": 2}, "needs at least 3"),
        ("induction", {"layout": "spiral"}, "allowed: gaps, repeat"),
        ("induction", {"seq_len": 16, "max_segment": 8}, "max_segment <= 7"),
    ],
)
def test_impossible_options_are_refused_with_the_limit(name, options, message):
    with pytest.raises(ValueError, match=message):
        TASKS[name](**options)
