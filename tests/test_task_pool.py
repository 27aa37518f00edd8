"""A finite training pool (MAD-lab's training-set size): fixed across runs and drawn lazily (that
it alone feeds training, never the held-out sets, is in the contract of bench/contract/test_tasks.py)."""
from __future__ import annotations

import torch

from tasks import TASKS, Batch
from tasks.base import POOL_CHUNK


def stream(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rows(batch: Batch) -> set[tuple[int, ...]]:
    return {tuple(row) for row in batch.inputs.tolist()}


def test_without_train_examples_a_task_generates_every_batch():
    task = TASKS["noisy_recall"]()
    assert task.train_set() is None
    assert not rows(task.sample(8, stream(1))) & rows(task.sample(8, stream(2)))


def test_the_pool_is_the_same_for_every_run_and_drawn_only_when_used():
    task = TASKS["selective_copy"](seq_len=32, num_tokens_to_copy=4, train_examples=POOL_CHUNK + 300)
    assert task._pool is None, "building a task (to validate it, or at another length) draws nothing"
    pool = task.train_set()
    assert len(pool) == POOL_CHUNK + 300 and task.train_set() is pool
    again = TASKS["selective_copy"](seq_len=32, num_tokens_to_copy=4, train_examples=POOL_CHUNK + 300).train_set()
    assert torch.equal(again.inputs, pool.inputs) and torch.equal(again.slices["gap"], pool.slices["gap"])


def test_a_batch_indexes_its_rows_with_their_targets_and_slices():
    batch = TASKS["fuzzy_recall"]().sample(6, stream())
    picked = batch[torch.tensor([4, 1, 1])]
    assert torch.equal(picked.inputs, batch.inputs[[4, 1, 1]]) and torch.equal(picked.targets, batch.targets[[4, 1, 1]])
    assert torch.equal(picked.slices["query_distance"], batch.slices["query_distance"][[4, 1, 1]])
    assert torch.equal(Batch.concatenate([batch[:2], batch[2:]]).inputs, batch.inputs)
