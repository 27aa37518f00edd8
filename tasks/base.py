"""The contract every task generator meets.

A task makes batches of (inputs, targets), both int64 of shape (batch, seq_len), from a seeded
``torch.Generator``: nothing is read from disk, and the same generator state gives the same batch.
``targets[b, i]`` is the token that should follow ``inputs[b, :i + 1]``, or ``IGNORE_INDEX`` where
the context does not determine it; loss and accuracy count only the other positions.

Subclass ``Task`` with a ``name`` and it is registered: ``task=<name>`` selects it, and its
keyword-only constructor options (``seq_len``, ``vocab_size`` and its own) become its config keys.
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

IGNORE_INDEX = -100

TASKS: dict[str, type[Task]] = {}


class Task:
    name: ClassVar[str]
    min_vocab_size: ClassVar[int] = 2

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            if cls.name in TASKS:
                raise TypeError(f"task name '{cls.name}' is registered twice")
            TASKS[cls.name] = cls

    def __init__(self, *, seq_len: int, vocab_size: int) -> None:
        if seq_len < 2:
            raise ValueError(f"task.seq_len={seq_len} is too short; it must be at least 2")
        if vocab_size < self.min_vocab_size:
            raise ValueError(
                f"task.vocab_size={vocab_size} is too small for task '{self.name}' "
                f"with these options; it needs at least {self.min_vocab_size}"
            )
        self.seq_len = seq_len
        self.vocab_size = vocab_size

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


def uniform_fraction(batch_size: int, generator: torch.Generator) -> Tensor:
    """One number in [0, 1) per sequence, for drawing per-sequence lengths and offsets."""
    return torch.rand(batch_size, generator=generator)
