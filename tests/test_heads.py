import pytest
import torch
from torch import nn

from bench.heads import head_scores


class FixedPattern(nn.Module):
    """Attention that always looks `offset(n)` back (or at itself when that is before the start)."""

    def __init__(self, offsets):
        super().__init__()
        self.offsets = offsets
        self.weight = nn.Parameter(torch.zeros(1))

    def attention_patterns(self, tokens):
        batch, seq_len = tokens.shape
        n = (seq_len - 1) // 2
        layers = []
        for offset in self.offsets:
            keys = torch.arange(seq_len) - offset(n)
            keys = torch.where(keys >= 0, keys, torch.arange(seq_len))
            pattern = nn.functional.one_hot(keys, seq_len).float()
            layers.append(pattern.expand(batch, 1, seq_len, seq_len))
        return layers


def test_scores_of_ideal_previous_token_duplicate_and_induction_heads():
    model = FixedPattern([lambda n: 1, lambda n: n, lambda n: n - 1])
    scores = head_scores(model, vocab_size=1000, seq_len=41, generator=torch.Generator().manual_seed(0))
    assert list(scores) == ["L0H0", "L1H0", "L2H0"]
    assert scores["L0H0"] == {"previous_token": 1.0, "duplicate_token": 0.0, "induction": 0.0}
    assert scores["L1H0"]["duplicate_token"] == 1.0 and scores["L1H0"]["induction"] == 0.0
    assert scores["L2H0"]["induction"] == 1.0 and scores["L2H0"]["previous_token"] == pytest.approx(0.0, abs=0.05)


def test_an_even_length_probe_is_shortened_to_bos_plus_two_copies():
    scores = head_scores(FixedPattern([lambda n: n - 1]), vocab_size=1000, seq_len=42, generator=torch.Generator().manual_seed(0))
    assert scores["L0H0"]["induction"] == 1.0
