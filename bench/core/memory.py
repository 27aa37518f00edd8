"""What a job needs in memory, estimated from its config alone before anything is allocated, so
that a config no machine can hold is refused in one line rather than killed part way
(``model.d_model=65536 model.n_heads=1`` asks for 51 GB of weights, ``task.train_examples=10**12``
for a pool of terabytes).

    weights and optimiser        3 x the parameters' bytes: weights and AdamW's two moments
    activations and gradients    the peak of one training step (forward, loss, backward) run on the
                                 meta device, where tensors have shapes and no storage
    data                         a finite training set (task.train_examples, say), inputs and targets;
                                 a batch larger than the set is the set (a full-batch step)

A variant whose forward cannot run on the meta device gets a rough figure instead: every layer
holding four (batch, heads, T, T) float32 maps, the logits three times over, and the gradients.
Every shipped variant runs there; on the default model and a few others the estimate is within
1.3x of the peak measured in a real training step (tests/test_hostile.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from plugin.compat import peak_live_bytes
from tasks import Task
from tasks.base import PooledTask

GIB = 2**30
# Bytes per parameter held through training besides its gradient: float32 weights and AdamW's two moments.
STATE_BYTES_PER_PARAMETER = 3 * 4
# A token id and its target, each int64, per position of a pooled training example.
POOL_BYTES_PER_POSITION = 2 * 8


@dataclass(frozen=True)
class MemoryEstimate:
    weights_and_state: int
    activations: int  # with the gradients
    data: int
    activations_exact: bool  # False: the rough figure for a variant the meta device cannot run

    @property
    def total(self) -> int:
        return self.weights_and_state + self.activations + self.data

    def describe(self) -> str:
        bound = "" if self.activations_exact else " (rough: this variant cannot run on the meta device)"
        return (f"about {size(self.total)}: weights and optimiser {size(self.weights_and_state)}, "
                f"activations and gradients {size(self.activations)}{bound}, data {size(self.data)}")  # fmt: skip


def size(count: int) -> str:
    """Bytes in MiB below a GiB, else in GiB, to three figures."""
    return f"{count / GIB:.3g} GiB" if count >= GIB else f"{count / 2**20:.3g} MiB"


def estimate_memory(cfg: DictConfig, model: nn.Module, task: Task) -> MemoryEstimate:
    """The estimate for the job of cfg, whose model has been built on the meta device."""
    parameters = sum(parameter.numel() for parameter in model.parameters())
    length, pool = cfg.task.seq_len, pool_size(task)
    batch = cfg.train.batch_size if pool is None else min(cfg.train.batch_size, pool)  # a step is full-batch past the pool
    try:
        activations, exact = peak_live_bytes(lambda: training_step(model, batch, length, cfg.task.vocab_size)), True
    except Exception:  # an op with no meta kernel, or autocast on the meta device
        maps = cfg.model.n_layers * 4 * batch * cfg.model.n_heads * length**2 * 4
        activations, exact = maps + 3 * batch * length * cfg.task.vocab_size * 4 + 4 * parameters, False
    return MemoryEstimate(parameters * STATE_BYTES_PER_PARAMETER, activations, (pool or 0) * length * POOL_BYTES_PER_POSITION, exact)


def pool_size(task: Task) -> int | None:
    """The examples of a task's finite training set (None for a generator), without drawing a pool
    that task.train_examples may make larger than any machine."""
    if isinstance(task, PooledTask):
        return task.train_examples
    train_set = task.train_set()
    return None if train_set is None else len(train_set)


def training_step(model: nn.Module, batch: int, length: int, vocab_size: int) -> None:
    tokens = torch.zeros(batch, length, dtype=torch.long, device="meta")
    logits = model(tokens)
    logits = logits[0] if isinstance(logits, tuple) else logits
    nn.functional.cross_entropy(logits.reshape(-1, vocab_size), tokens.reshape(-1)).backward()


def memory_limit(cfg: DictConfig) -> tuple[int, str]:
    """The bytes a job may use, and where that number comes from: memory_limit_gb if set, else the
    device's memory (this machine's RAM, or the GPU's)."""
    if cfg.memory_limit_gb:
        return int(cfg.memory_limit_gb * GIB), f"memory_limit_gb={cfg.memory_limit_gb:g}"
    device = torch.device(cfg.device)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory, f"the memory of {torch.cuda.get_device_name(device)}"
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine's memory"
