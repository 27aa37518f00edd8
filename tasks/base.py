"""The contract every task generator meets.

A task makes a ``Batch`` from a seeded ``torch.Generator``: nothing is read from disk, and the
same generator state gives the same batch.

    inputs   (batch, T) int64   the tokens the model reads
    targets  (batch, T) int64   the label of each position, IGNORE_INDEX where it is not scored;
                                for most tasks the token that follows inputs[:, :i + 1]
    slices   name -> (batch, T) int64, a property of each scored position that the generator
             knows because it planted it (induction: the gap back to the earlier occurrence),
             so that the report can break accuracy down by it, as Zoology does by key-value pairs

Labels come from what the generator planted, never from the answer: whether position i is
scored depends on inputs[:, :i + 1] and on the plant, not on the token to predict.

Subclass ``Task`` with a ``name`` and it is registered: ``task=<name>`` selects it, and its
keyword-only constructor options (``seq_len``, ``vocab_size`` and its own) become its config keys.
A task also states its chance level (context-free, and given the context of a held-out batch:
``chance_given_context``, whose rule each task file states in a sentence "Chance given the
context: ..."), its content tokens, the fixed offsets at which its answer always lies (none for
most), and the options that set its difficulty. A task with a finite data set returns its whole
training set from ``train_set`` and draws validation and test sets from held-out examples in
``evaluation_set``.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from plugin import register

IGNORE_INDEX = -100
SPLITS = ("validation", "test")

TASKS: dict[str, type[Task]] = {}


@dataclass
class Batch:
    inputs: Tensor
    targets: Tensor
    slices: dict[str, Tensor] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.inputs.to(device), self.targets.to(device), {k: v.to(device) for k, v in self.slices.items()})

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, rows: Tensor | slice) -> Batch:
        """The sequences at `rows` (indices, a mask or a slice), with their targets and slices."""
        return Batch(self.inputs[rows], self.targets[rows], {k: v[rows] for k, v in self.slices.items()})

    @staticmethod
    def concatenate(batches: list[Batch]) -> Batch:
        """The batches' sequences, one batch after the other (they share their slice names)."""
        first = batches[0]
        return Batch(
            torch.cat([b.inputs for b in batches]),
            torch.cat([b.targets for b in batches]),
            {name: torch.cat([b.slices[name] for b in batches]) for name in first.slices},
        )


class Task:
    name: ClassVar[str]
    min_vocab_size: ClassVar[int] = 2
    # Options that set the task's difficulty: the axes the report plots accuracy against.
    difficulty_axes: ClassVar[tuple[str, ...]] = ("seq_len", "vocab_size")
    # False for tasks whose label is not the next input token (e.g. predicting the previous one).
    predicts_next_token: ClassVar[bool] = True
    # True for tasks whose sequences have one length (e.g. "a b =" of modular arithmetic).
    fixed_length: ClassVar[bool] = False
    # The test accuracy at which a run counts as solving the task (the report's verdicts): below the
    # early stop's 0.99 validation target, so that a run stopped there is not judged on its last digit.
    solved_at: ClassVar[float] = 0.95

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        register(TASKS, "task", cls)

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

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """A training batch drawn from `generator`."""
        raise NotImplementedError

    def evaluation_set(self, split: str, size: int, generator: torch.Generator) -> Batch:
        """The held-out `split` ("validation" or "test"): `size` sequences drawn from the split's own
        stream. A task with a finite data set returns its held-out examples of that split instead."""
        return self.sample(size, generator)

    def train_set(self) -> Batch | None:
        """The whole training set of a task with a finite data set; None for a generator."""
        return None

    @property
    def chance_accuracy(self) -> float:
        """Accuracy of the best guess that ignores the context: 1 / the number of possible answers."""
        return 1 / self.vocab_size

    def chance_given_context(self, batch: Batch) -> float:
        """The expected accuracy, over `batch`'s scored positions, of the best guess a model could make
        without the ability the task tests. This default is the context-free ``chance_accuracy``, for
        tasks whose context offers no candidate answers; a task whose context does overrides it
        (usually with ``uniform_over_context``) and states its rule in its module docstring."""
        return self.chance_accuracy

    @property
    def content_tokens(self) -> range:
        """Tokens that appear as plain content (not markers or BOS): what a probe may draw from."""
        return range(self.vocab_size)

    @property
    def fixed_offsets(self) -> tuple[int, ...]:
        """Distances back at which the answer's source always lies (fixed copy: half the length).
        Head-score probes avoid repeat periods near them, so that position cannot pass as content."""
        return ()


def uniform_over_context(batch: Batch, candidate_tokens: Iterable[int], where: Tensor | None = None) -> float:
    """The expected accuracy of a guess drawn uniformly from the distinct candidate answers seen so
    far, averaged over the scored positions of `batch` (targets != IGNORE_INDEX).

    At scored position i of a row, the candidates are the distinct tokens of `candidate_tokens`
    among inputs[:, :i + 1], counting only the positions where `where` (batch, T) is True if it is
    given; the guess is right with probability 1[target among them] / their number. Where no
    candidate has been seen, the guess is uniform over all of `candidate_tokens`. Vectorised: the
    first position of each token among the candidates, then a running count of first occurrences.
    """
    inputs, targets = batch.inputs, batch.targets
    scored = targets != IGNORE_INDEX
    if not scored.any():
        raise ValueError("the batch has no scored position (every target is IGNORE_INDEX): no chance level to measure")
    device, (rows, length) = inputs.device, inputs.shape
    tokens = torch.as_tensor(list(candidate_tokens), dtype=torch.int64, device=device)
    vocab = max(int(inputs.max()), int(targets.max()), int(tokens.max()) if len(tokens) else -1) + 1
    is_candidate = torch.zeros(vocab, dtype=torch.bool, device=device)
    is_candidate[tokens] = True
    position = torch.arange(length, device=device).expand(rows, -1)
    seen = is_candidate[inputs.clamp(min=0)] & (inputs >= 0)
    if where is not None:
        seen &= where.to(device=device, dtype=torch.bool)
    # first[b, v]: the first position where row b shows candidate v (length: never)
    first = torch.full((rows, vocab), length, device=device).scatter_reduce(1, inputs.clamp(min=0), torch.where(seen, position, length), "amin")
    count = (seen & (first.gather(1, inputs.clamp(min=0)) == position)).cumsum(1)
    target = targets.clamp(min=0)
    hit = first.gather(1, target) <= position
    unseen = count == 0
    hit = torch.where(unseen, is_candidate[target], hit)
    count = torch.where(unseen, len(tokens), count).clamp(min=1)
    return (hit.double() / count)[scored].mean().item()


def uniform_fraction(batch_size: int, generator: torch.Generator) -> Tensor:
    """One number in [0, 1) per sequence, for drawing per-sequence lengths and offsets."""
    return torch.rand(batch_size, generator=generator)


# The pool's own seed: every run and seed of a setting trains on the same examples, as MAD-lab's
# stored data sets do; seeds then vary the initialisation and the batch order.
TRAIN_POOL_SEED = 12345
# Sequences generated at once while drawing a pool, which bounds the generator's working memory.
POOL_CHUNK = 1024


class PooledTask(Task):
    """A generator task that can also train on a finite pool of examples: MAD-lab's training-set
    size axis (``train_examples``; None trains on fresh sequences, as every generator does).

    Subclasses implement ``generate``. With ``train_examples=N``, ``train_set`` is N sequences drawn
    once from TRAIN_POOL_SEED (lazily, so a task built only to validate or to evaluate at another
    length never draws it), ``sample`` draws training batches from it uniformly with replacement,
    and the validation and test sets are fresh sequences from their own streams, as MAD-lab's
    separately generated test sets are.
    """

    def __init__(self, *, seq_len: int, vocab_size: int, train_examples: int | None) -> None:
        super().__init__(seq_len=seq_len, vocab_size=vocab_size)
        self.train_examples = train_examples
        self._pool: Batch | None = None

    def generate(self, batch_size: int, generator: torch.Generator) -> Batch:
        """`batch_size` fresh sequences drawn from `generator`."""
        raise NotImplementedError

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        pool = self.train_set()
        if pool is None:
            return self.generate(batch_size, generator)
        return pool[torch.randint(len(pool), (batch_size,), generator=generator)]

    def evaluation_set(self, split: str, size: int, generator: torch.Generator) -> Batch:
        return self.generate(size, generator)

    def train_set(self) -> Batch | None:
        if self.train_examples is None:
            return None
        if self._pool is None:
            generator = torch.Generator().manual_seed(TRAIN_POOL_SEED)
            sizes = [min(POOL_CHUNK, self.train_examples - start) for start in range(0, self.train_examples, POOL_CHUNK)]
            self._pool = Batch.concatenate([self.generate(size, generator) for size in sizes])
        return self._pool
