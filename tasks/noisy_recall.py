"""Noisy recall (MAD-lab, Poli et al. 2024, arXiv:2403.17844): in-context recall with pairs of noise
tokens among the key-value pairs; the noise is never scored and must be ignored. Seq_len 12, vocab
12 with 4 noise tokens (keys 0–3, values 4–7, noise 8–11; ``.`` = not scored):

    inputs   2  5  9 11  2  5  0  7 10  8  0  7
    targets  .  .  .  .  5  .  .  .  .  .  7  .

Each of the seq_len/2 − 1 slots before the closing pair holds two noise tokens (drawn with
repeats from the top ``noise_vocab_size`` tokens) with probability ``noise_fraction``, and a
key-value pair otherwise; one slot is always a pair. ``vocab_size`` counts the noise tokens, as in
MAD-lab (baseline: vocab 32 with 16 noise tokens, noise fraction 0.2, 12,800 training examples).
Everything else is ``in_context_recall``'s, differences from MAD-lab included. Slices:
``query_distance``, the distance back to the key's latest earlier occurrence.

Chance given the context: a guess drawn uniformly from the distinct value tokens seen so far,
noise tokens excluded (``tasks/key_value.py``); the answer is always one of them (about 0.22 at the
defaults, where the context-free chance is 1/8).
"""
from __future__ import annotations

from typing import Annotated, Optional

from plugin import Range
from tasks.key_value import KeyValueRecall


class NoisyRecall(KeyValueRecall):
    name = "noisy_recall"
    difficulty_axes = ("seq_len", "vocab_size", "train_examples", "noise_fraction")

    def __init__(
        self,
        *,
        seq_len: int = 128,
        vocab_size: int = 32,
        noise_vocab_size: Annotated[int, Range(1)] = 16,
        noise_fraction: Annotated[float, Range(0, 1, high_open=True)] = 0.2,
        train_examples: Annotated[Optional[int], Range(1)] = None,
    ) -> None:
        super().__init__(
            seq_len=seq_len, vocab_size=vocab_size, train_examples=train_examples,
            noise_vocab_size=noise_vocab_size, noise_fraction=noise_fraction,
        )  # fmt: skip
