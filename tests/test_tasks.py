"""What makes each shipped task the task it claims to be, beyond the contract every task meets
(bench/contract/test_tasks.py, run over all of them by the default test command)."""
from __future__ import annotations

import pytest
import torch

from bench.contract.test_tasks import BATCH, stream
from tasks import IGNORE_INDEX, TASKS
from tasks.induction import BOS, plant, planted_labels


def test_copy_induction_and_prev_token_are_registered():
    assert {"copy", "induction", "prev_token"} <= set(TASKS)


def test_fixed_copy_is_the_seed_task():
    task = TASKS["copy"](seq_len=32, vocab_size=16)
    batch = task.sample(BATCH, stream())
    assert torch.equal(batch.inputs[:, 16:], batch.inputs[:, :16])
    scored = (batch.targets != IGNORE_INDEX).nonzero()[:, 1].unique()
    assert scored.tolist() == list(range(15, 31)), "exactly the predictions of the copied half"
    assert task.fixed_offsets == (16,) and task.chance_accuracy == 1 / 16


def test_variable_copy_has_no_fixed_offset_and_slices_by_length():
    task = TASKS["copy"](seq_len=32, vocab_size=16, variable_length=True)
    batch = task.sample(BATCH, stream())
    inputs, targets = batch.inputs, batch.targets
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
        scored = targets[row] != IGNORE_INDEX
        assert (batch.slices["length"][row][scored] == n).all()
        assert batch.slices["index"][row][scored].tolist() == list(range(n))
    assert task.fixed_offsets == () and task.chance_accuracy == 1 / 14, "the answer is one of vocab - 2 content tokens"


def test_induction_docstring_example():
    tokens = torch.tensor([[0, 4, 7, 2, 5, 9, 4, 7, 2, 8, 1, 3]])
    plants = [(torch.tensor([[1]]), torch.tensor([[6]]), torch.tensor([[3]]))]
    batch = planted_labels(tokens, plants)
    assert batch.targets.tolist() == [[IGNORE_INDEX] * 6 + [7, 2] + [IGNORE_INDEX] * 4]
    assert batch.slices["gap"][0, 6:8].tolist() == [5, 5] and batch.slices["segment_index"][0, 6:8].tolist() == [0, 1]


def test_a_chance_repeat_in_the_background_is_never_scored():
    # 9 5 at positions 1-2 and again at 8-9 by chance; the planted segment 4 7 2 is at 3 and 10
    tokens = torch.tensor([[0, 9, 5, 4, 7, 2, 6, 3, 9, 5, 4, 7, 2, 1]])
    plants = [(torch.tensor([[3]]), torch.tensor([[10]]), torch.tensor([[3]]))]
    scored = (planted_labels(tokens, plants).targets[0] != IGNORE_INDEX).nonzero()[:, 0].tolist()
    assert scored == [10, 11], "position 8 (9 -> 5, a chance repeat) is not scored, however consistent"


def test_a_planted_position_is_dropped_when_its_context_is_ambiguous():
    # token 4 occurs at 1 (followed by 8) before the plant 4 7 at 3 is copied to 6
    tokens = torch.tensor([[0, 4, 8, 4, 7, 5, 4, 7, 2]])
    plants = [(torch.tensor([[3]]), torch.tensor([[6]]), torch.tensor([[2]]))]
    assert (planted_labels(tokens, plants).targets == IGNORE_INDEX).all()


def test_induction_labels_do_not_depend_on_anything_after_the_position():
    task = TASKS["induction"](seq_len=64, vocab_size=8)  # small vocabulary: many ambiguous positions
    generator = stream(7)
    for _ in range(20):
        source, copy, length = task._draw_plant(1, 1, generator)
        tokens = plant(torch.randint(1, 8, (1, 64), generator=generator), source, copy, length)
        tokens[:, 0] = BOS
        scored = planted_labels(tokens, [(source, copy, length)]).targets != IGNORE_INDEX
        for position in range(copy.item(), (copy + length).item()):
            changed = tokens.clone()
            changed[:, position + 1 :] = torch.randint(1, 8, (1, 63 - position), generator=generator)
            rescored = planted_labels(changed, [(source, copy, length)]).targets != IGNORE_INDEX
            assert torch.equal(rescored[:, : position + 1], scored[:, : position + 1])


def test_induction_scores_only_the_plant_at_random_gaps():
    task = TASKS["induction"](seq_len=64, vocab_size=64)
    batch = task.sample(BATCH, stream())
    inputs, targets = batch.inputs, batch.targets
    assert (inputs[:, 0] == BOS).all() and (inputs[:, 1:] != BOS).all()
    rows, positions = (targets != IGNORE_INDEX).nonzero(as_tuple=True)
    gaps = batch.slices["gap"][rows, positions]
    assert torch.equal(inputs[rows, positions], inputs[rows, positions - gaps]), "the token was planted gap positions back"
    assert torch.equal(targets[rows, positions], inputs[rows, positions - gaps + 1])
    assert gaps.unique().numel() > 10, "the repeat distance varies, so no fixed offset solves the task"
    assert task.chance_accuracy == 1 / 63 and list(task.content_tokens) == list(range(1, 64))


def test_induction_windows_hold_one_plant_each():
    task = TASKS["induction"](seq_len=65, vocab_size=1000, n_repeats=4, min_segment=4, max_segment=8)
    batch = task.sample(BATCH, stream())
    rows, positions = (batch.targets != IGNORE_INDEX).nonzero(as_tuple=True)
    window = (positions - 1) // task.window
    assert window.unique().tolist() == [0, 1, 2, 3]
    source = positions - batch.slices["gap"][rows, positions]
    assert torch.equal((source - 1) // task.window, window), "each copy's source lies in its own window"


def test_induction_probe_is_bos_then_a_random_string_twice():
    task = TASKS["induction"](seq_len=33, vocab_size=1000, layout="repeat")
    batch = task.sample(BATCH, stream())
    inputs, targets = batch.inputs, batch.targets
    assert (inputs[:, 0] == BOS).all()
    assert torch.equal(inputs[:, 1:17], inputs[:, 17:33])
    assert (targets[:, :17] == IGNORE_INDEX).all(), "nothing before the second copy is determined"
    scored = targets[:, 17:32] != IGNORE_INDEX
    assert scored.float().mean() > 0.95, "with a large vocabulary nearly every second-copy position is unambiguous"
    assert task.fixed_offsets == (16,)


def test_previous_token_targets():
    batch = TASKS["prev_token"](seq_len=8, vocab_size=10).sample(4, stream())
    assert (batch.targets[:, 0] == IGNORE_INDEX).all()
    assert torch.equal(batch.targets[:, 1:], batch.inputs[:, :-1])


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
        ("induction", {"seq_len": 65, "n_repeats": 4, "max_segment": 9}, r"max_segment <= 8 \(a segment and its copy in each of the task.n_repeats=4"),
        ("induction", {"n_repeats": 0}, "must be at least 1"),
        ("prev_token", {"seq_len": 1}, "too short"),
    ],
)
def test_impossible_options_are_refused_with_the_limit(name, options, message):
    with pytest.raises(ValueError, match=message):
        TASKS[name](**options)
