"""Multi-query associative recall (MQAR; Zoology, Arora et al. 2023, arXiv:2312.04927): key-value
pairs, then a query of every key; at each query, predict the key's value.

Keys come from the lower half of the vocabulary (1 … vocab/2 − 1) and values from the upper half,
each drawn without replacement within a sequence. The pairs fill a prefix; every key is then
queried once, at an even offset of the rest of the sequence. Only the queries are scored: the
target at a query is its key's value, which is not written after it. Seq_len 16, vocab 16, three
pairs 3→9, 6→12, 1→14 queried in slots 0, 3 and 1 of the five after the prefix (``.`` = not
scored; with ``random_fillers=false`` the gaps hold 0):

    inputs   3  9  6 12  1 14  3  0  1  0  0  0  6  0  0  0
    targets  .  .  .  .  .  .  9  . 14  .  .  .  12 .  .  .

As in Zoology's code, the slot of each query is drawn from a power law, p(s) ∝ a·s^(a−1) over
slots s = 1 … (seq_len − 2·pairs)/2 without replacement, one key after the other in prefix order,
with ``power_law_a`` = a (Zoology's ``power_a``, 0.01 by default: early slots dominate, so most
queries follow the prefix closely; a = 1 is uniform). The distance from a query back to its key is
that slot plus the key's distance to the end of the prefix. ``random_fillers`` (Zoology's
``random_non_queries``, on by default as in its MQARConfig; its Figure 2 configs turn it off)
fills the gaps with tokens drawn from the whole vocabulary; they are never scored.

Slices: ``num_kv_pairs``, the sequence's number of pairs, and ``query_distance``, the distance back
from a query to its key. Zoology slices accuracy by the number of pairs of each test set; here
``min_kv_pairs`` draws each sequence's number of pairs uniformly from [min_kv_pairs, num_kv_pairs]
(Zoology mixes data sets of several pair counts instead), so one run's test set spans pair counts.

The default vocabulary is 256 tokens, where Zoology's is 8,192 (which it finds brings out
differences between architectures): at 8,192 the output layer dominates a CPU training step.

Where this differs from Zoology, and why: training draws fresh sequences every step instead of
epochs over 100,000 stored ones (our generators have no finite training set unless they declare
one); there is no ``num_passes`` (JRT repeats of the prefix); Zoology's check that the vocabulary
exceeds seq_len is not made, since nothing in the task needs it; and seq_len may be odd.

Chance given the context: a model that cannot look a key up can still name one of the values of
the pairs in the prefix, drawn uniformly from the distinct ones; values are distinct within a
sequence, so that is 1/k for a sequence of k pairs (0.125 at the defaults, where the context-free
chance is 1/128), and with ``min_kv_pairs`` the mean of 1/k over the scored queries. Value-half
tokens among the random fillers are not pair values and are not counted.
"""
from __future__ import annotations

from typing import Annotated, Optional

import torch
from torch import Tensor

from plugin import Range
from tasks.base import IGNORE_INDEX, Batch, Task, uniform_fraction, uniform_over_context

# Token 0 is neither key nor value: Zoology's filler between queries.
FILLER = 0


class AssocRecall(Task):
    name = "assoc_recall"
    difficulty_axes = ("num_kv_pairs", "seq_len", "vocab_size")
    predicts_next_token = False

    def __init__(
        self,
        *,
        seq_len: int = 64,
        vocab_size: int = 256,
        num_kv_pairs: Annotated[int, Range(1)] = 8,
        min_kv_pairs: Annotated[Optional[int], Range(1)] = None,
        power_law_a: Annotated[float, Range(0, 1, low_open=True)] = 0.01,
        random_fillers: bool = True,
    ) -> None:
        # keys 1 … vocab/2 − 1 and values vocab/2 … vocab − 1, num_kv_pairs of each
        self.min_vocab_size = 2 * num_kv_pairs + 2
        super().__init__(seq_len=seq_len, vocab_size=vocab_size)
        if 4 * num_kv_pairs > seq_len:
            raise ValueError(
                f"task.num_kv_pairs={num_kv_pairs} does not fit in task.seq_len={seq_len}: the pairs and a query "
                f"slot of two tokens for each need 4 × num_kv_pairs tokens; allowed: num_kv_pairs <= {seq_len // 4}"
            )
        if min_kv_pairs is not None and min_kv_pairs > num_kv_pairs:
            raise ValueError(
                f"task.min_kv_pairs={min_kv_pairs} exceeds task.num_kv_pairs={num_kv_pairs}; "
                "allowed: min_kv_pairs <= num_kv_pairs, or null for always num_kv_pairs"
            )
        self.num_kv_pairs = num_kv_pairs
        self.min_kv_pairs = num_kv_pairs if min_kv_pairs is None else min_kv_pairs
        self.power_law_a = power_law_a
        self.random_fillers = random_fillers

    @property
    def chance_accuracy(self) -> float:
        return 1 / (self.vocab_size - self.vocab_size // 2)

    @property
    def content_tokens(self) -> range:
        return range(1, self.vocab_size)

    def chance_given_context(self, batch: Batch) -> float:
        """Uniform over the distinct values of the sequence's pairs (module docstring): the odd
        positions of the prefix of ``num_kv_pairs`` pairs, read from the batch's slice."""
        position = torch.arange(batch.inputs.shape[1], device=batch.inputs.device)[None, :]
        pairs = batch.slices["num_kv_pairs"][:, :1]
        value_slot = (position % 2 == 1) & (position < 2 * pairs)
        return uniform_over_context(batch, range(self.vocab_size // 2, self.vocab_size), value_slot)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        half = self.vocab_size // 2
        span = self.num_kv_pairs - self.min_kv_pairs + 1
        pairs = self.min_kv_pairs + (uniform_fraction(batch_size, generator) * span).long()
        keys = 1 + distinct(batch_size, half - 1, self.num_kv_pairs, generator)
        values = half + distinct(batch_size, self.vocab_size - half, self.num_kv_pairs, generator)
        slots_after_prefix = (self.seq_len - 2 * pairs) // 2
        slot = torch.arange(1, (self.seq_len - 2 * self.min_kv_pairs) // 2 + 1)
        weights = torch.where(slot <= slots_after_prefix[:, None], slot.double() ** (self.power_law_a - 1), 0.0)
        slots = torch.multinomial(weights, self.num_kv_pairs, replacement=False, generator=generator)
        if self.random_fillers:
            fillers = torch.randint(0, self.vocab_size, (batch_size, self.seq_len), generator=generator)
        else:
            fillers = torch.full((batch_size, self.seq_len), FILLER)
        return lay_out(keys, values, pairs, slots, fillers)


def distinct(batch_size: int, choices: int, count: int, generator: torch.Generator) -> Tensor:
    """(batch, count): per row, `count` different numbers from range(choices), in random order."""
    return torch.rand(batch_size, choices, generator=generator).argsort(dim=1)[:, :count]


def lay_out(keys: Tensor, values: Tensor, pairs: Tensor, slots: Tensor, fillers: Tensor) -> Batch:
    """The MQAR batch of a plant: row b holds the first pairs[b] of its keys and values as a prefix
    k0 v0 k1 v1 …, then key i again at query slot slots[b, i] (0: right after the prefix), every
    other position from `fillers`; the target at each query is its key's value."""
    batch_size, seq_len = fillers.shape
    used = torch.arange(keys.shape[1])[None, :] < pairs[:, None]
    rows = torch.arange(batch_size)[:, None].expand_as(keys)
    key_at, query_at = 2 * torch.arange(keys.shape[1])[None, :].expand_as(keys), 2 * (pairs[:, None] + slots)
    inputs, targets = fillers.clone(), torch.full_like(fillers, IGNORE_INDEX)
    distance = torch.zeros_like(fillers)
    rows, key_at, query_at, keys, values = rows[used], key_at[used], query_at[used], keys[used], values[used]
    inputs[rows, key_at], inputs[rows, key_at + 1], inputs[rows, query_at] = keys, values, keys
    targets[rows, query_at] = values
    distance[rows, query_at] = query_at - key_at
    return Batch(inputs, targets, {"num_kv_pairs": pairs[:, None].expand(-1, seq_len).clone(), "query_distance": distance})
