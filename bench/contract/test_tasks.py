"""The contract every registered task meets, a user's plug-ins included (bench/contract/__init__.py):
batches of the declared shape, dtype and vocabulary with something to score; chance, content tokens
and difficulty axes declared; next-token targets where it predicts the next token; the same stream
state gives the same batch; held-out splits from their own streams; a finite training pool that
feeds training and never the held-out sets."""
from __future__ import annotations

import pytest
import torch

from bench.external import load_external
from tasks import IGNORE_INDEX, SPLITS, TASKS, Batch

load_external()  # the user's plug-ins, named in the environment or by installed packages, join TASKS

BATCH = 64


def stream(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


all_tasks = pytest.mark.parametrize("name", sorted(TASKS))


@all_tasks
def test_shapes_dtypes_vocabulary_and_slices(name):
    task = TASKS[name]()
    batch = task.sample(BATCH, stream())
    assert isinstance(batch, Batch) and len(batch) == BATCH
    assert batch.inputs.shape == batch.targets.shape == (BATCH, task.seq_len)
    assert batch.inputs.dtype == batch.targets.dtype == torch.int64
    assert 0 <= batch.inputs.min() and batch.inputs.max() < task.vocab_size
    scored = batch.targets != IGNORE_INDEX
    assert scored.any(dim=1).float().mean() > 0.5, "most sequences have something to score"
    assert (batch.targets[scored] < task.vocab_size).all()
    for values in batch.slices.values():
        assert values.shape == batch.inputs.shape and values.dtype == torch.int64


@all_tasks
def test_chance_content_and_difficulty_are_declared(name):
    task = TASKS[name]()
    assert 0 < task.chance_accuracy <= 0.5
    assert set(task.content_tokens) <= set(range(task.vocab_size)) and len(task.content_tokens) >= 2
    assert set(task.difficulty_axes) <= set(TASKS[name].__init__.__kwdefaults__ or {})


@all_tasks
def test_targets_are_the_next_token_where_scored(name):
    if not TASKS[name].predicts_next_token:
        pytest.skip(f"{name} does not predict the next token")
    batch = TASKS[name]().sample(BATCH, stream())
    scored = batch.targets[:, :-1] != IGNORE_INDEX
    assert torch.equal(batch.targets[:, :-1][scored], batch.inputs[:, 1:][scored])
    assert (batch.targets[:, -1] == IGNORE_INDEX).all()


@all_tasks
def test_same_generator_state_same_batch_and_streams_differ(name):
    task = TASKS[name]()
    first, second = task.sample(BATCH, stream(3)), task.sample(BATCH, stream(3))
    assert torch.equal(first.inputs, second.inputs) and torch.equal(first.targets, second.targets)
    assert not torch.equal(task.sample(BATCH, stream(4)).inputs, first.inputs)


@all_tasks
@pytest.mark.parametrize("split", SPLITS)
def test_held_out_splits_come_from_their_own_stream(name, split):
    task = TASKS[name]()
    assert torch.equal(task.evaluation_set(split, 8, stream(5)).inputs, task.evaluation_set(split, 8, stream(5)).inputs)


@pytest.mark.parametrize("name", [name for name in sorted(TASKS) if "train_examples" in (TASKS[name].__init__.__kwdefaults__ or {})])
def test_a_training_pool_feeds_training_and_never_the_held_out_sets(name):
    task = TASKS[name](train_examples=32)
    pool = {tuple(row) for row in task.train_set().inputs.tolist()}
    assert len(task.train_set()) == 32 and len(pool) == 32
    assert {tuple(row) for row in task.sample(BATCH, stream()).inputs.tolist()} <= pool
    for split in SPLITS:
        assert not {tuple(row) for row in task.evaluation_set(split, BATCH, stream()).inputs.tolist()} & pool
