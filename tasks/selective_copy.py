"""Selective copying (Gu & Dao 2023, arXiv:2312.00752; MAD-lab, Poli et al. 2024): content tokens
scattered among noise tokens; after a marker, reproduce them in order. Seq_len 14, vocab 8 (content
0–5, noise 6, marker 7), 3 tokens to copy (``.`` = not scored):

    inputs   6  4  6  6  6  1  3  6  6  6  7  6  6  6
    targets  .  .  .  .  .  .  .  .  .  .  .  4  1  3

The ``num_tokens_to_copy`` content tokens (drawn with repeats) sit at random places among the
seq_len − num_tokens_to_copy − 1 positions before the marker, every other position holding the
noise token; the marker is followed by num_tokens_to_copy noise tokens, at which the content is
the target, so the label is not the next input token (the model never reads its own answers).
Finding the tokens needs content-aware selection: the places vary, so no fixed offset finds them.
Slices: ``index``, the place of the target in the copy, and ``gap``, the distance back to its
source. ``train_examples`` trains on a fixed pool of that many sequences. MAD-lab's baseline is vocab
16, seq_len 256, 16 tokens to copy and 12,800 training examples; the default seq_len here is 128,
so that the default model (context 512) can run the 4× length-generalisation analysis.

Where this differs from MAD-lab, and why: MAD-lab inserts each noise token before a uniformly
chosen content token, so its last content token always stands right before the marker, a fixed
offset; here the content's places are a uniform random subset of the positions before the marker,
as in Gu & Dao's description. MAD-lab's requirement of at least one noise token before the marker
(seq_len > 2 × num_tokens_to_copy + 1) is kept: without one the task is plain copying.

Chance given the context: a model that cannot select and order the tokens can still name one of
the content tokens it has seen (noise and marker excluded), drawn uniformly from the distinct ones;
the answer is always one of them, so a row with d distinct content tokens gives 1/d (about 0.10 at
the defaults, where the context-free chance is 1/14).
"""
from __future__ import annotations

from typing import Annotated, Optional

import torch
from torch import Tensor

from plugin import Range
from tasks.base import IGNORE_INDEX, Batch, PooledTask, uniform_over_context


class SelectiveCopy(PooledTask):
    name = "selective_copy"
    min_vocab_size = 4
    difficulty_axes = ("seq_len", "vocab_size", "num_tokens_to_copy", "train_examples")
    predicts_next_token = False

    def __init__(
        self,
        *,
        seq_len: int = 128,
        vocab_size: int = 16,
        num_tokens_to_copy: Annotated[int, Range(1)] = 16,
        train_examples: Annotated[Optional[int], Range(1)] = None,
    ) -> None:
        super().__init__(seq_len=seq_len, vocab_size=vocab_size, train_examples=train_examples)
        if seq_len < 2 * num_tokens_to_copy + 2:
            raise ValueError(
                f"task.num_tokens_to_copy={num_tokens_to_copy} leaves no noise token in task.seq_len={seq_len} "
                f"(the tokens, a noise token, the marker, then the copy); allowed: num_tokens_to_copy <= {(seq_len - 2) // 2}"
            )
        self.num_tokens_to_copy = num_tokens_to_copy

    @property
    def chance_accuracy(self) -> float:
        return 1 / len(self.content_tokens)

    @property
    def content_tokens(self) -> range:
        return range(self.vocab_size - 2)

    def chance_given_context(self, batch: Batch) -> float:
        """Uniform over the distinct content tokens seen so far (module docstring)."""
        return uniform_over_context(batch, self.content_tokens)

    def generate(self, batch_size: int, generator: torch.Generator) -> Batch:
        count = self.num_tokens_to_copy
        content = torch.randint(0, self.vocab_size - 2, (batch_size, count), generator=generator)
        before_marker = self.seq_len - count - 1
        places = torch.rand(batch_size, before_marker, generator=generator).argsort(dim=1)[:, :count].sort(dim=1).values
        return lay_out(content, places, self.seq_len, self.vocab_size)


def lay_out(content: Tensor, places: Tensor, seq_len: int, vocab_size: int) -> Batch:
    """The batch with content[b, i] at places[b, i] (increasing), the noise token (vocab − 2)
    elsewhere, the marker (vocab − 1), then the copy's noise-token positions with the content as
    their targets."""
    batch_size, count = content.shape
    inputs = torch.full((batch_size, seq_len), vocab_size - 2).scatter(1, places, content)
    inputs[:, seq_len - count - 1] = vocab_size - 1
    targets = torch.full_like(inputs, IGNORE_INDEX)
    targets[:, seq_len - count :] = content
    index, gap = torch.zeros_like(inputs), torch.zeros_like(inputs)
    index[:, seq_len - count :] = torch.arange(count)
    gap[:, seq_len - count :] = torch.arange(seq_len - count, seq_len) - places
    return Batch(inputs, targets, {"index": index, "gap": gap})
