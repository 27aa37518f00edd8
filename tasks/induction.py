"""Induction: after ... A B ... A, predict B, for random tokens A and B.

``layout=gaps`` (default, for training and scoring): a random-token background after [BOS]
(token 0), with a segment copied forward to a random later place, so no fixed offset finds the
earlier occurrence. Only the planted copy is scored: position i of the copy (predicting the next
copied token) counts unless the context up to i makes the answer ambiguous, that is unless some
earlier occurrence of token i was followed by another token than the planted one (after Sanford
et al. 2024, arXiv:2408.14332). Chance repeats in the background are never scored, and nothing
after position i decides whether i is scored. Seq_len 12, vocab 10, segment ``4 7 2`` planted at
1 and copied to 6, a gap of 5 (``.`` = not scored):

    inputs   0  4  7  2  5  9  4  7  2  8  1  3
    targets  .  .  .  .  .  .  7  2  .  .  .  .

(the copy's last token ``2`` predicts ``8``, which the plant does not determine: not scored).
Slices: ``gap``, the distance back to the planted source, and ``segment_index``, the position of
the current token in the copy (0 for its first token). ``n_repeats`` splits the sequence after
[BOS] into that many equal windows, each with its own segment and copy.

``layout=repeat`` is the classic probe: [BOS] + R + R with R random, scored on the second copy
(unless ambiguous by the same rule); the gap is always len(R).

    inputs   0  4  7  2  5  4  7  2  5
    targets  .  .  .  .  .  7  2  5  .

Chance given the context: a guess drawn uniformly from the distinct content tokens (not BOS) of
inputs[:, :i + 1], the current token included; the answer, copied from the earlier occurrence, is
always one of them (about 0.036 at the defaults, where the context-free chance is 1/63).
"""
from __future__ import annotations

import torch
from torch import Tensor

from tasks.base import IGNORE_INDEX, Batch, Task, uniform_fraction, uniform_over_context

BOS = 0
LAYOUTS = ("gaps", "repeat")


class Induction(Task):
    name = "induction"
    min_vocab_size = 3
    difficulty_axes = ("seq_len", "vocab_size", "max_segment")

    def __init__(
        self,
        *,
        seq_len: int = 64,
        vocab_size: int = 64,
        layout: str = "gaps",
        min_segment: int = 4,
        max_segment: int = 16,
        n_repeats: int = 1,
    ) -> None:
        super().__init__(seq_len=seq_len, vocab_size=vocab_size)
        if layout not in LAYOUTS:
            raise ValueError(f"task.layout='{layout}' is unknown; allowed: {', '.join(LAYOUTS)}")
        if n_repeats < 1:
            raise ValueError(f"task.n_repeats={n_repeats} must be at least 1")
        window = (seq_len - 1) // n_repeats
        if layout == "gaps" and not 1 <= min_segment <= max_segment <= window // 2:
            raise ValueError(
                f"task.min_segment={min_segment}, task.max_segment={max_segment} must satisfy "
                f"1 <= min_segment <= max_segment <= {window // 2} (a segment and its copy in each of the "
                f"task.n_repeats={n_repeats} windows after [BOS] in seq_len={seq_len})"
            )
        self.layout = layout
        self.min_segment = min_segment
        self.max_segment = max_segment
        self.n_repeats = n_repeats
        self.window = window

    @property
    def chance_accuracy(self) -> float:
        return 1 / (self.vocab_size - 1)

    @property
    def content_tokens(self) -> range:
        return range(1, self.vocab_size)

    @property
    def fixed_offsets(self) -> tuple[int, ...]:
        return ((self.seq_len - 1) // 2,) if self.layout == "repeat" else ()

    def chance_given_context(self, batch: Batch) -> float:
        """Uniform over the distinct content tokens seen so far (module docstring)."""
        return uniform_over_context(batch, self.content_tokens)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        tokens = torch.randint(1, self.vocab_size, (batch_size, self.seq_len), generator=generator)
        tokens[:, 0] = BOS
        if self.layout == "repeat":
            half = (self.seq_len - 1) // 2
            plants = [(torch.full((batch_size, 1), 1), torch.full((batch_size, 1), 1 + half), torch.full((batch_size, 1), half))]
        else:
            plants = [self._draw_plant(batch_size, 1 + repeat * self.window, generator) for repeat in range(self.n_repeats)]
        for source, copy, length in plants:
            tokens = plant(tokens, source, copy, length)
        return planted_labels(tokens, plants)

    def _draw_plant(self, batch_size: int, window_start: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """(source, copy, length), each (batch, 1): a segment and a later copy inside one window."""
        span = self.max_segment - self.min_segment + 1
        length = self.min_segment + (uniform_fraction(batch_size, generator) * span).long()[:, None]
        source = window_start + (uniform_fraction(batch_size, generator)[:, None] * (self.window - 2 * length + 1)).long()
        earliest_copy = source + length
        latest_copy = window_start + self.window - length
        copy = earliest_copy + (uniform_fraction(batch_size, generator)[:, None] * (latest_copy - earliest_copy + 1)).long()
        return source, copy, length


def plant(tokens: Tensor, source: Tensor, copy: Tensor, length: Tensor) -> Tensor:
    """tokens with the segment [source, source + length) written again at [copy, copy + length)."""
    position = torch.arange(tokens.shape[1])[None, :]
    in_copy = (position >= copy) & (position < copy + length)
    return tokens.gather(1, torch.where(in_copy, source + position - copy, position))


def planted_labels(tokens: Tensor, plants: list[tuple[Tensor, Tensor, Tensor]]) -> Batch:
    """Targets and slices from the plants: position i of a copy that predicts the next copied token
    is scored unless an earlier occurrence of tokens[i] was followed by another token than the
    plant's. Everything read lies at or before i, so later tokens never decide whether i counts."""
    _, seq_len = tokens.shape
    position = torch.arange(seq_len)[None, :]
    targets = torch.full_like(tokens, IGNORE_INDEX)
    gap, segment_index = torch.zeros_like(tokens), torch.zeros_like(tokens)
    # earlier[b, i, j]: position j < i holds token i's token; successor[b, j] = tokens[b, j + 1]
    earlier = (tokens[:, :, None] == tokens[:, None, :]) & torch.ones(seq_len, seq_len, dtype=torch.bool).tril(-1)
    successor = torch.cat([tokens[:, 1:], torch.full_like(tokens[:, :1], IGNORE_INDEX)], dim=1)
    for source, copy, length in plants:
        predicts_copy = (position >= copy) & (position < copy + length - 1)
        planted_answer = tokens.gather(1, (source + position - copy + 1).clamp(0, seq_len - 1))
        disagreeing = earlier & (successor[:, None, :] != planted_answer[:, :, None])
        scored = predicts_copy & ~disagreeing.any(dim=-1)
        targets = torch.where(scored, planted_answer, targets)
        gap = torch.where(predicts_copy, (copy - source).expand_as(tokens), gap)
        segment_index = torch.where(predicts_copy, position - copy, segment_index)
    return Batch(tokens, targets, {"gap": gap, "segment_index": segment_index})
