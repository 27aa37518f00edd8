"""The key-value stream behind MAD-lab's recall tasks (in-context, noisy and fuzzy recall; Poli et
al. 2024, arXiv:2403.17844, athms/mad-lab ``mad/data/instances.py``), shared by their task files.

A sequence is a stream of segments: a pair (a key of k tokens, then a value of v tokens) or, with
probability ``noise_fraction``, k + v noise tokens. A key's tokens are distinct tokens of the key
block of the vocabulary and a value's of the value block (MAD-lab's motifs). Keys repeat within a
sequence, and a key always has the value drawn at its first occurrence there; across sequences
the mapping is new. A pair whose key occurred before is a query: its value is scored, from the
last key token (predicting the first value token) to the second-to-last value token. The stream
ends with a pair that repeats one of the sequence's keys (uniform over its distinct keys), so that
every sequence has something to score, and is left-padded to seq_len where segments of several
lengths leave a remainder.

Everything that decides whether a position is scored (its segment's role and whether that key
occurred in an earlier segment) is the plant's and lies at or before the position. Slices:
``query_distance``, the distance back to the key's most recent earlier occurrence, and
``value_index``, the place of the predicted token in its value.

Chance given the context (in-context, noisy and fuzzy recall alike): a model that cannot match a
key can still name a value token it has seen, drawn uniformly from the distinct tokens of the value
block among inputs[:, :i + 1] (keys, noise and pad are not candidates); the answer, shown with the
key's earlier occurrence, is always one of them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tasks.base import IGNORE_INDEX, Batch, PooledTask, uniform_over_context


class KeyValueRecall(PooledTask):
    """A MAD-lab recall task. The vocabulary, from 0: keys, values (the content, split in halves as
    MAD-lab does), then ``noise_vocab_size`` noise tokens, then the pad token where segments of
    several lengths need one (``padded``)."""

    def __init__(
        self,
        *,
        seq_len: int,
        vocab_size: int,
        train_examples: int | None,
        noise_vocab_size: int = 0,
        noise_fraction: float = 0.0,
        max_key_length: int = 1,
        max_value_length: int = 1,
        padded: bool = False,
    ) -> None:
        reserved = noise_vocab_size + int(padded)
        # two keys and two values at least, and enough distinct tokens for the longest key and value
        self.min_vocab_size = reserved + 2 * max(2, max_key_length, max_value_length)
        super().__init__(seq_len=seq_len, vocab_size=vocab_size, train_examples=train_examples)
        longest = max_key_length + max_value_length
        if seq_len < 2 * longest:
            raise ValueError(
                f"task.seq_len={seq_len} is too short for a pair and its query of up to {longest} tokens each; "
                f"allowed: seq_len >= {2 * longest}"
            )
        if not padded and seq_len % 2:
            raise ValueError(f"task.seq_len={seq_len} must be even: pairs of two tokens fill the sequence")
        content = vocab_size - reserved
        self.keys, self.values = range(content // 2), range(content // 2, content)
        self.noise = range(content, content + noise_vocab_size)
        self.noise_fraction = noise_fraction
        self.max_key_length, self.max_value_length = max_key_length, max_value_length
        self.pad_token = vocab_size - 1 if padded else IGNORE_INDEX  # never written when not padded

    @property
    def chance_accuracy(self) -> float:
        return 1 / len(self.values)

    @property
    def content_tokens(self) -> range:
        return range(self.keys.start, self.values.stop)

    def chance_given_context(self, batch: Batch) -> float:
        """Uniform over the distinct value tokens seen so far (module docstring)."""
        return uniform_over_context(batch, self.values)

    def generate(self, batch_size: int, generator: torch.Generator) -> Batch:
        return self.stream(batch_size, generator, shortest_key=1)

    def stream(self, batch_size: int, generator: torch.Generator, shortest_key: int) -> Batch:
        """Sequences of segments whose keys have shortest_key … max_key_length tokens."""
        longest = self.max_key_length + self.max_value_length
        budget = self.seq_len - longest  # the body; the closing query needs at most `longest`
        count = budget // (shortest_key + 1)
        shape = (batch_size, count)
        key_length = torch.randint(shortest_key, self.max_key_length + 1, shape, generator=generator)
        value_length = torch.randint(1, self.max_value_length + 1, shape, generator=generator)
        noise = torch.rand(shape, generator=generator) < self.noise_fraction
        # one of the segments that fit whatever their lengths is a pair, as MAD-lab keeps one slot free of noise
        pair = torch.randint(0, budget // longest, (batch_size, 1), generator=generator)
        noise &= torch.arange(count) != pair
        key_tokens = self.keys.start + motifs(shape, len(self.keys), self.max_key_length, generator)
        value_tokens = self.values.start + motifs(shape, len(self.values), self.max_value_length, generator)

        code = torch.where(noise, -1 - torch.arange(count), key_code(key_tokens, key_length, len(self.keys)))
        first, previous = occurrences(code)  # noise segments match nothing, so they keep their own value
        value_length, value_tokens = value_length.gather(1, first), value_tokens.gather(1, first[..., None].expand_as(value_tokens))
        length = key_length + value_length
        fits = length.cumsum(1) <= budget
        offset = torch.arange(longest)
        tokens = torch.where(
            offset < key_length[..., None],
            key_tokens.gather(2, offset.clamp(max=self.max_key_length - 1).expand(*shape, -1)),
            value_tokens.gather(2, (offset - key_length[..., None]).clamp(0, self.max_value_length - 1)),
        )
        if len(self.noise):
            noise_tokens = torch.randint(self.noise.start, self.noise.stop, (*shape, longest), generator=generator)
            tokens = torch.where(noise[..., None], noise_tokens, tokens)

        # the closing query: a key first presented in the body, uniform over those keys
        presented = fits & ~noise & (first == torch.arange(count))
        probe = torch.multinomial(presented.double(), 1, generator=generator)[:, 0]
        rows = torch.arange(batch_size)
        same_key = fits & (code == code[rows, probe][:, None])
        latest = torch.where(same_key, torch.arange(count), -1).amax(1)

        def closing(body: Tensor, query: Tensor) -> Tensor:
            return torch.cat([body, query[:, None]], dim=1)

        segments = Segments(
            key_length=closing(key_length, key_length[rows, probe]),
            value_length=closing(value_length, value_length[rows, probe]),
            length=closing(length * fits, length[rows, probe]),
            noise=closing(noise, torch.zeros_like(probe, dtype=torch.bool)),
            repeated=closing(fits & (first != torch.arange(count)), torch.ones_like(probe, dtype=torch.bool)),
            previous=closing(previous, latest),
            tokens=closing(tokens, tokens[rows, probe]),
        )
        return render(segments, self.seq_len, self.pad_token)


@dataclass
class Segments:
    """Per segment (batch, segments): its lengths, its role, the latest earlier segment with its key
    (-1: none), and its tokens (batch, segments, max key + max value length)."""

    key_length: Tensor
    value_length: Tensor
    length: Tensor  # 0 for a segment that does not fit
    noise: Tensor
    repeated: Tensor
    previous: Tensor
    tokens: Tensor


def motifs(shape: tuple[int, int], choices: int, length: int, generator: torch.Generator) -> Tensor:
    """(*shape, length): per segment, `length` different numbers from range(choices)."""
    return torch.rand(*shape, choices, generator=generator).argsort(dim=-1)[..., :length]


def key_code(tokens: Tensor, length: Tensor, choices: int) -> Tensor:
    """One number per key that equals another's exactly when both keys are the same tokens."""
    digit = torch.where(torch.arange(tokens.shape[-1]) < length[..., None], tokens + 1, 0)
    return (digit * (choices + 1) ** torch.arange(tokens.shape[-1])).sum(-1)


def occurrences(code: Tensor) -> tuple[Tensor, Tensor]:
    """Per segment, the index of the first segment with its code and of the latest earlier one
    (-1 where there is none)."""
    ordered, order = code.sort(dim=1, stable=True)
    index = torch.arange(code.shape[1]).expand_as(code)
    starts = torch.cat([torch.ones_like(ordered[:, :1], dtype=torch.bool), ordered[:, 1:] != ordered[:, :-1]], dim=1)
    group_start = torch.where(starts, index, 0).cummax(dim=1).values
    first = torch.empty_like(code).scatter_(1, order, order.gather(1, group_start))
    before = torch.cat([torch.full_like(order[:, :1], -1), order[:, :-1]], dim=1)
    previous = torch.empty_like(code).scatter_(1, order, torch.where(starts, -1, before))
    return first, previous


def render(segments: Segments, seq_len: int, pad_token: int) -> Batch:
    """The token sequences, right-aligned and left-padded, with targets and slices."""
    ends = segments.length.cumsum(1)
    pad = seq_len - ends[:, -1:]
    starts = pad + ends - segments.length
    position = torch.arange(seq_len).expand(len(ends), -1)
    segment = torch.searchsorted(pad + ends, position.contiguous(), right=True).clamp(max=ends.shape[1] - 1)
    offset = position - starts.gather(1, segment)
    is_pad = position < pad

    def at(values: Tensor) -> Tensor:
        return values.gather(1, segment)

    width = segments.tokens.shape[2]
    tokens = segments.tokens.flatten(1).gather(1, segment * width + offset.clamp(0, width - 1))
    key_length = at(segments.key_length)
    in_value = offset - key_length  # -1 at the last key token
    inputs = torch.where(is_pad, pad_token, tokens)
    scored = ~is_pad & at(segments.repeated) & ~at(segments.noise) & (in_value >= -1) & (in_value < at(segments.value_length) - 1)
    next_tokens = torch.cat([inputs[:, 1:], inputs[:, :1]], dim=1)
    targets = torch.where(scored, next_tokens, IGNORE_INDEX)
    previous_start = starts.gather(1, segments.previous.clamp(min=0))
    distance = torch.where(scored, starts.gather(1, segment) - at(previous_start), 0)
    return Batch(inputs, targets, {"query_distance": distance, "value_index": torch.where(scored, in_value + 1, 0)})
