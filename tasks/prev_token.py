"""Previous token (seed 003): at each position, output the token before it. Random tokens; the
first position has no previous token and is not scored. Seq_len 8, vocab 10:

    inputs   3  9  4  4  1  7  0  2
    targets  .  3  9  4  4  1  7  0

A purely positional task: one RoPE head attending exactly one position back solves it, which is
what the rotary QK-offset analysis looks for. Slice: ``position``.

Chance given the context: the answer is always a token of the context, so a model that cannot
attend one position back can still name a token it has seen, drawn uniformly from the distinct
tokens of inputs[:, :i + 1]; at early positions that is far above 1/vocab (about 0.13 at the
defaults, where the context-free chance is 1/16).
"""
from __future__ import annotations

import torch

from tasks.base import IGNORE_INDEX, Batch, Task, uniform_over_context


class PreviousToken(Task):
    name = "prev_token"
    predicts_next_token = False

    def __init__(self, *, seq_len: int = 32, vocab_size: int = 16) -> None:
        super().__init__(seq_len=seq_len, vocab_size=vocab_size)

    @property
    def fixed_offsets(self) -> tuple[int, ...]:
        return (1,)

    def chance_given_context(self, batch: Batch) -> float:
        """Uniform over the distinct tokens seen so far (module docstring)."""
        return uniform_over_context(batch, self.content_tokens)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        inputs = torch.randint(0, self.vocab_size, (batch_size, self.seq_len), generator=generator)
        targets = torch.cat([torch.full_like(inputs[:, :1], IGNORE_INDEX), inputs[:, :-1]], dim=1)
        return Batch(inputs, targets, {"position": torch.arange(self.seq_len).expand(batch_size, -1)})
