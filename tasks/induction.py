"""Induction: after ... A B ... A, predict B, for random tokens A and B.

``layout=gaps`` (default, for training and scoring): a random-token background after [BOS]
(token 0), with a segment copied forward to a random later place, so no fixed offset finds the
earlier occurrence. A position is scored only where its token occurred earlier and every earlier
occurrence was followed by the token that comes next (Sanford et al. 2024, arXiv:2408.14332).
Seq_len 12, vocab 10, segment ``4 7 2`` repeated after a gap of 2 (``.`` = ignored target):

    inputs   0  4  7  2  5  9  4  7  2  8  1  3
    targets  .  .  .  .  .  .  7  2  .  .  .  .

(at ``2`` the next token is 8, not the 5 that followed it before: not determined, not scored).

``layout=repeat`` is the classic probe used for head scores: [BOS] + R + R with R random,
scored on the second copy wherever R's token is unambiguous.

    inputs   0  4  7  2  5  4  7  2  5
    targets  .  .  .  .  .  7  2  5  .
"""
from __future__ import annotations

import torch
from torch import Tensor

from tasks.base import IGNORE_INDEX, Task, uniform_fraction

BOS = 0
LAYOUTS = ("gaps", "repeat")


class Induction(Task):
    name = "induction"
    min_vocab_size = 3

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
        longest = (seq_len - 1) // 2
        if layout == "gaps" and not 1 <= min_segment <= max_segment <= longest:
            raise ValueError(
                f"task.min_segment={min_segment}, task.max_segment={max_segment} must satisfy "
                f"1 <= min_segment <= max_segment <= {longest} (a segment and its copy after [BOS] "
                f"in seq_len={seq_len})"
            )
        if n_repeats < 1:
            raise ValueError(f"task.n_repeats={n_repeats} must be at least 1")
        self.layout = layout
        self.min_segment = min_segment
        self.max_segment = max_segment
        self.n_repeats = n_repeats

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        tokens = torch.randint(1, self.vocab_size, (batch_size, self.seq_len), generator=generator)
        tokens[:, 0] = BOS
        if self.layout == "repeat":
            length = (self.seq_len - 1) // 2
            tokens[:, 1 + length : 1 + 2 * length] = tokens[:, 1 : 1 + length]
        else:
            for _ in range(self.n_repeats):
                tokens = self._copy_segment_forward(tokens, generator)
        return tokens, determined_successors(tokens)

    def _copy_segment_forward(self, tokens: Tensor, generator: torch.Generator) -> Tensor:
        batch_size, seq_len = tokens.shape
        span = self.max_segment - self.min_segment + 1
        length = self.min_segment + (uniform_fraction(batch_size, generator) * span).long()[:, None]
        source = 1 + (uniform_fraction(batch_size, generator)[:, None] * (seq_len - 2 * length)).long()
        earliest_copy = source + length
        copy = earliest_copy + (uniform_fraction(batch_size, generator)[:, None] * (seq_len - length - earliest_copy + 1)).long()
        position = torch.arange(seq_len)[None, :]
        in_copy = (position >= copy) & (position < copy + length)
        return tokens.gather(1, torch.where(in_copy, source + position - copy, position))


def determined_successors(tokens: Tensor) -> Tensor:
    """Next-token targets where the context determines them, IGNORE_INDEX elsewhere.

    Position i is determined when its token occurred at some j < i and every such occurrence was
    followed by tokens[i + 1].
    """
    seq_len = tokens.shape[1]
    current, successor = tokens[:, :-1], tokens[:, 1:]
    earlier = torch.ones(seq_len - 1, seq_len - 1, dtype=torch.bool, device=tokens.device).tril(-1)
    same_token = (current[:, :, None] == current[:, None, :]) & earlier
    same_successor = successor[:, :, None] == successor[:, None, :]
    seen = same_token.any(dim=-1)
    consistent = ~(same_token & ~same_successor).any(dim=-1)
    targets = torch.full_like(tokens, IGNORE_INDEX)
    targets[:, :-1] = torch.where(seen & consistent, successor, IGNORE_INDEX)
    return targets
