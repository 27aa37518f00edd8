"""Modular arithmetic on a finite data set, the grokking task (Power et al. 2022, arXiv:2201.02177;
Nanda et al. 2023, arXiv:2301.05217): read "a b =" and answer (a op b) mod p at "=".

Residues 0 .. p-1 are tokens 0 .. p-1 and "=" is token p, so vocab_size is p + 1 and every
sequence has 3 tokens; only "=" is scored. p 5, operation add (``.`` = not scored):

    inputs   3  4  5
    targets  .  .  2          (3 + 4) mod 5 = 2

The data set is all p² pairs (a, b), split once by ``split_seed``: floor(train_fraction p²) pairs
are the training set; the held-out rest is halved into the validation and the test set, disjoint,
each returned whole by ``evaluation_set`` (its ``size`` and generator are ignored). ``sample``
draws training pairs uniformly with replacement; a ``train.batch_size`` of at least the training
set's size trains full batch, on every training pair at each step. Operations: add (a + b),
sub (a - b) and mul (a b), all mod p. No slices: every sequence is scored at "=" alone.

Chance given the context: the context-free 1/p (Task's default). The context holds the operands,
not candidate answers: the answer equals an operand only where the operation leaves it unchanged
(b = 0 for add and sub; a = 0 or b = 1 for mul), so naming an operand scores about 1/p (2/p for
mul), and knowing when it is right is knowing the operation, the ability tested.
"""
from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor

from plugin import Range
from tasks.base import IGNORE_INDEX, Batch, Task

OPERATIONS = ("add", "sub", "mul")
SEQ_LEN = 3  # a, b, "="


def combine(a: Tensor, b: Tensor, operation: str, p: int) -> Tensor:
    """(a op b) mod p, elementwise."""
    if operation == "add":
        return (a + b) % p
    if operation == "sub":
        return (a - b) % p
    return (a * b) % p


class ModularAddition(Task):
    name = "modular_addition"
    difficulty_axes = ("p", "train_fraction")
    predicts_next_token = False  # the answer at "=" is never an input token
    fixed_length = True

    def __init__(
        self,
        *,
        seq_len: int = SEQ_LEN,
        vocab_size: int = 114,
        p: Annotated[int, Range(2, 4096)] = 113,
        train_fraction: Annotated[float, Range(0, 1, low_open=True, high_open=True)] = 0.3,
        operation: str = "add",
        split_seed: Annotated[int, Range(0, 2**63 - 1)] = 0,
    ) -> None:
        super().__init__(seq_len=seq_len, vocab_size=vocab_size)
        if seq_len != SEQ_LEN:
            raise ValueError(f"task.seq_len={seq_len} is not allowed for modular_addition; allowed: {SEQ_LEN} (a, b, '=')")
        if vocab_size != p + 1:
            raise ValueError(f"task.vocab_size={vocab_size} does not fit task.p={p}; allowed: task.vocab_size={p + 1} (the residues and '=')")
        if operation not in OPERATIONS:
            raise ValueError(f"task.operation='{operation}' is unknown; allowed: {', '.join(OPERATIONS)}")
        pairs = p * p
        train_size = int(train_fraction * pairs)  # floor: 3,830 of 113² at 0.3, as in the paper
        if not 1 <= train_size <= pairs - 2:
            raise ValueError(
                f"task.train_fraction={train_fraction} with task.p={p} gives {train_size} of {pairs} pairs for training; "
                f"allowed: a fraction giving 1 to {pairs - 2} (at least one validation and one test pair held out)"
            )
        self.p, self.train_fraction, self.operation, self.split_seed = p, train_fraction, operation, split_seed
        order = torch.randperm(pairs, generator=torch.Generator().manual_seed(split_seed))
        validation_end = train_size + (pairs - train_size) // 2
        self.train_pairs = order[:train_size]
        self.held_out_pairs = {"validation": order[train_size:validation_end], "test": order[validation_end:]}

    @property
    def equals_token(self) -> int:
        return self.p

    @property
    def chance_accuracy(self) -> float:
        return 1 / self.p

    @property
    def content_tokens(self) -> range:
        return range(self.p)

    def sequences(self, pair_indices: Tensor) -> Batch:
        """The sequences "a b =" of pairs numbered a p + b, labelled at "=" with (a op b) mod p."""
        a, b = pair_indices // self.p, pair_indices % self.p
        inputs = torch.stack([a, b, torch.full_like(a, self.equals_token)], dim=1)
        targets = torch.full_like(inputs, IGNORE_INDEX)
        targets[:, -1] = combine(a, b, self.operation, self.p)
        return Batch(inputs, targets)

    def all_pairs(self) -> Batch:
        """Every pair, a-major (row a p + b is the pair (a, b)): the grid the Fourier analysis reads."""
        return self.sequences(torch.arange(self.p * self.p))

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        drawn = torch.randint(len(self.train_pairs), (batch_size,), generator=generator)
        return self.sequences(self.train_pairs[drawn])

    def evaluation_set(self, split: str, size: int, generator: torch.Generator) -> Batch:
        """Every held-out pair of `split`, whatever `size` asks: the split is the whole finite set."""
        return self.sequences(self.held_out_pairs[split])

    def train_set(self) -> Batch:
        return self.sequences(self.train_pairs)
