"""Copy: a random string followed by the same string again; only the copy is scored.

Fixed split (the seed's form; ``.`` marks an ignored target), seq_len 8, vocab 16:

    inputs   3 12  4  9 |  3 12  4  9
    targets  .  .  .  3   12  4  9  .

The copy always starts seq_len / 2 back, so one head attending a fixed distance back solves it
without reading content. ``variable_length=true`` (Jelassi et al. 2024, arXiv:2402.01032) draws
a string of random length at a random start, marked by ``$`` (token vocab-2) and followed by the
separator ``|`` (token vocab-1); background tokens fill the rest. Seq_len 12, vocab 16:

    inputs   7  5  $  2  6  9  |  2  6  9 11  4
    targets  .  .  .  .  .  .  2  6  9  .  .  .

Exact match asks for every scored token of a sequence to be right. Every copied position is
scored: the markers (or the fixed split) determine the answer. Slices: ``length``, the string's
length, and ``index``, the position of the predicted token in the copy.

Chance given the context: a guess drawn uniformly from the distinct content tokens of the string to
copy (the first half; with ``variable_length``, the tokens between ``$`` and ``|``), all of which
are seen by the first scored position; the answer is always one of them, so a row whose string has
d distinct tokens gives 1/d at each of its scored positions (about 0.099 at the defaults, 0.16
with ``variable_length=true``; context-free: 1/16 and 1/14).
"""
from __future__ import annotations

from typing import Optional

import torch

from tasks.base import IGNORE_INDEX, Batch, Task, uniform_fraction, uniform_over_context


class Copy(Task):
    name = "copy"

    def __init__(
        self,
        *,
        seq_len: int = 32,
        vocab_size: int = 16,
        variable_length: bool = False,
        min_len: int = 1,
        max_len: Optional[int] = None,
    ) -> None:
        self.variable_length = variable_length
        self.min_vocab_size = 4 if variable_length else 2
        super().__init__(seq_len=seq_len, vocab_size=vocab_size)
        if not variable_length:
            if seq_len % 2 != 0 or seq_len < 4:
                raise ValueError(f"task.seq_len={seq_len} must be even and at least 4 for the fixed-split copy")
            return
        longest = (seq_len - 2) // 2
        self.max_len = longest if max_len is None else max_len
        self.min_len = min_len
        if not 1 <= min_len <= self.max_len <= longest:
            raise ValueError(
                f"task.min_len={min_len}, task.max_len={max_len} must satisfy 1 <= min_len <= max_len <= "
                f"{longest} (the longest string that fits twice, with its two markers, in seq_len={seq_len})"
            )
        self.start_token = vocab_size - 2
        self.separator_token = vocab_size - 1

    @property
    def chance_accuracy(self) -> float:
        return 1 / len(self.content_tokens)

    @property
    def content_tokens(self) -> range:
        return range(self.vocab_size - 2 if self.variable_length else self.vocab_size)

    def chance_given_context(self, batch: Batch) -> float:
        """Uniform over the distinct tokens of the string to copy seen so far (module docstring)."""
        inputs = batch.inputs
        if self.variable_length:
            opened = (inputs == self.start_token).cumsum(1) > 0
            in_string = opened & ((inputs == self.separator_token).cumsum(1) == 0)
        else:
            in_string = (torch.arange(inputs.shape[1], device=inputs.device) < inputs.shape[1] // 2).expand_as(inputs)
        return uniform_over_context(batch, self.content_tokens, in_string)

    @property
    def fixed_offsets(self) -> tuple[int, ...]:
        return () if self.variable_length else (self.seq_len // 2,)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        if self.variable_length:
            return self._sample_variable(batch_size, generator)
        half = self.seq_len // 2
        string = torch.randint(0, self.vocab_size, (batch_size, half), generator=generator)
        inputs = torch.cat([string, string], dim=1)
        targets = torch.full_like(inputs, IGNORE_INDEX)
        targets[:, half - 1 : -1] = string
        index = (torch.arange(self.seq_len) - half + 1).expand(batch_size, -1)
        return Batch(inputs, targets, {"length": torch.full_like(inputs, half), "index": index})

    def _sample_variable(self, batch_size: int, generator: torch.Generator) -> Batch:
        content_vocab = self.vocab_size - 2
        tokens = torch.randint(0, content_vocab, (batch_size, self.seq_len), generator=generator)
        span = self.max_len - self.min_len + 1
        length = self.min_len + (uniform_fraction(batch_size, generator) * span).long()[:, None]
        room = self.seq_len - 2 * length - 2
        start = (uniform_fraction(batch_size, generator)[:, None] * (room + 1)).long()
        separator = start + 1 + length
        position = torch.arange(self.seq_len)[None, :]
        in_copy = (position > separator) & (position <= separator + length)
        source = (position - length - 1).clamp(min=0)
        tokens = torch.where(in_copy, tokens.gather(1, source), tokens)
        tokens = torch.where(position == start, self.start_token, tokens)
        tokens = torch.where(position == separator, self.separator_token, tokens)
        predicts_copy = (position >= separator) & (position < separator + length)
        next_tokens = torch.cat([tokens[:, 1:], tokens[:, :1]], dim=1)
        targets = torch.where(predicts_copy, next_tokens, IGNORE_INDEX)
        return Batch(tokens, targets, {"length": length.expand(-1, self.seq_len), "index": position - separator})
