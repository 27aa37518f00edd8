"""Fuzzy recall (MAD-lab, Poli et al. 2024, arXiv:2403.17844): in-context recall where keys and
values are runs of several tokens. Seq_len 20, vocab 16 (keys 0–6, values 7–14, pad 15), keys and
values of up to 2 tokens (``.`` = not scored):

    inputs   15 15  3  1  9 12  5  8  1 10  7  3  1  9 12  5  8  1 10  7
    targets   .  .  .  .  .  .  .  .  .  .  .  .  9 12  .  8  . 10  7  .

Keys (1 … ``max_key_length`` distinct tokens of the lower half of the content) and values
(1 … ``max_value_length`` distinct tokens of the upper half) are MAD-lab's motifs; ``3 1`` and
``1`` are different keys. A repeated key's whole value is scored, from its last key token on.
Pairs fill the sequence up to room for the closing pair, which repeats a key of the sequence, and
the rest is left-padded; one token is the pad, so the content is vocab − 1 tokens (MAD-lab's
baseline: vocab 16, keys and values of up to 3 tokens, 12,800 training examples).

As in MAD-lab, training keys have 1 … max_key_length tokens and the validation and test keys all
have max_key_length, where a key's end is known from the context (the first value token after a
shorter key cannot be told from another key token). Where this differs from MAD-lab, and why:
training scores only the repeated values, as evaluation does (MAD-lab trains on every next token);
MAD-lab plants its closing pair at a random place and fills around it, where here it is a key of
the stream (the same shared generator as ``in_context_recall``); and there are no noise tokens,
which MAD-lab's benchmark never turns on for this task. Slices: ``query_distance``, the distance
back to the key's latest earlier occurrence, and ``value_index``, the place of the predicted token
in its value.

Chance given the context: a guess drawn uniformly from the distinct value tokens seen so far, keys
and pad excluded (``tasks/key_value.py``), the answer always being one of them; a value's tokens
fill most of the value block within a few pairs, so it is about 0.13 at the defaults, barely above
the context-free 1/8.
"""
from __future__ import annotations

from typing import Annotated, Optional

import torch

from plugin import Range
from tasks.base import Batch
from tasks.key_value import KeyValueRecall


class FuzzyRecall(KeyValueRecall):
    name = "fuzzy_recall"
    difficulty_axes = ("seq_len", "vocab_size", "train_examples")

    def __init__(
        self,
        *,
        seq_len: int = 128,
        vocab_size: int = 16,
        max_key_length: Annotated[int, Range(1)] = 3,
        max_value_length: Annotated[int, Range(1)] = 3,
        train_examples: Annotated[Optional[int], Range(1)] = None,
    ) -> None:
        super().__init__(
            seq_len=seq_len, vocab_size=vocab_size, train_examples=train_examples,
            max_key_length=max_key_length, max_value_length=max_value_length, padded=True,
        )  # fmt: skip

    def evaluation_set(self, split: str, size: int, generator: torch.Generator) -> Batch:
        return self.stream(size, generator, shortest_key=self.max_key_length)
