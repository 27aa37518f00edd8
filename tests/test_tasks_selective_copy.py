"""Selective copying: the docstring example, content at random places reproduced in order after the
marker, and its refusals."""
from __future__ import annotations

import pytest
import torch
from task_examples import docstring_example

import tasks.selective_copy
from tasks import IGNORE_INDEX, TASKS

BATCH = 64


def test_selective_copy_docstring_example():
    example = docstring_example(tasks.selective_copy)
    batch = tasks.selective_copy.lay_out(torch.tensor([[4, 1, 3]]), torch.tensor([[1, 5, 6]]), seq_len=14, vocab_size=8)
    assert batch.inputs[0].tolist() == example["inputs"] and batch.targets[0].tolist() == example["targets"]
    assert batch.slices["index"][0, 11:].tolist() == [0, 1, 2] and batch.slices["gap"][0, 11:].tolist() == [10, 7, 7]


def test_the_copy_reproduces_the_content_in_order_from_random_places():
    task = TASKS["selective_copy"](seq_len=64, vocab_size=16, num_tokens_to_copy=8)
    batch = task.sample(BATCH, torch.Generator().manual_seed(0))
    noise, marker = 14, 15
    assert (batch.inputs[:, 55] == marker).all() and (batch.inputs[:, 56:] == noise).all()
    assert (batch.targets[:, :56] == IGNORE_INDEX).all()
    content_places = batch.inputs[:, :55] != noise
    assert (content_places.sum(1) == 8).all()
    for row in range(BATCH):
        assert batch.targets[row, 56:].tolist() == batch.inputs[row, :55][content_places[row]].tolist()
    sources = torch.arange(56, 64) - batch.slices["gap"][:, 56:]
    assert torch.equal(batch.inputs.gather(1, sources), batch.targets[:, 56:])
    assert sources[:, -1].unique().numel() > 5, "the last token's place varies: no fixed offset finds it"
    assert task.chance_accuracy == 1 / 14 and task.fixed_offsets == ()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"seq_len": 33, "num_tokens_to_copy": 16}, "allowed: num_tokens_to_copy <= 15"),
        ({"vocab_size": 3}, "needs at least 4"),
    ],
)
def test_impossible_selective_copy_options_are_refused_with_the_limit(options, message):
    with pytest.raises(ValueError, match=message):
        TASKS["selective_copy"](**options)
