"""In-context recall (MAD-lab, Poli et al. 2024, arXiv:2403.17844): a stream of key-value pairs in
which keys repeat; at every repeat, predict the value the key had before. Seq_len 12, vocab 8 (keys
0–3, values 4–7; ``.`` = not scored):

    inputs   2  5  0  7  2  5  3  4  0  7  2  5
    targets  .  .  .  .  5  .  .  .  7  .  5  .

Keys are drawn uniformly, with repeats, from the lower half of the vocabulary; a key's value is
drawn from the upper half at its first occurrence and kept for the sequence. seq_len/2 − 1 pairs
are followed by a closing pair that repeats a key of the sequence. Every repeat is scored (MAD-lab's
``multi_query=True``, its benchmark setting); first occurrences are not, since nothing determines
them. Slices: ``query_distance``, the distance back to the key's latest earlier occurrence.
``train_examples`` trains on a fixed pool of that many sequences (MAD-lab's baseline: 12,800).

Where this differs from MAD-lab, and why: training scores the same positions as evaluation (the
repeats), where MAD-lab trains on every next token, most of which no context determines; the
sequence is seq_len tokens long, where MAD-lab's inputs are one shorter after its shift; and the
closing key is drawn over the sequence's distinct keys as MAD-lab's is, but through the shared
key-value stream of ``tasks/key_value.py`` that also makes the noisy and fuzzy tasks.

Chance given the context: a guess drawn uniformly from the distinct value tokens seen so far
(``tasks/key_value.py``); the answer is always one of them. Keys repeat early, when few values have
been seen, so it is about 0.21 at the defaults, where the context-free chance is 1/8.
"""
from __future__ import annotations

from typing import Annotated, Optional

from plugin import Range
from tasks.key_value import KeyValueRecall


class InContextRecall(KeyValueRecall):
    name = "in_context_recall"
    difficulty_axes = ("seq_len", "vocab_size", "train_examples")

    def __init__(
        self,
        *,
        seq_len: int = 128,
        vocab_size: int = 16,
        train_examples: Annotated[Optional[int], Range(1)] = None,
    ) -> None:
        super().__init__(seq_len=seq_len, vocab_size=vocab_size, train_examples=train_examples)
