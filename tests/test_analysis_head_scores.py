"""Head scores follow TransformerLens's mul convention, checked against hand-made patterns whose
scores are known, and probes that no positional head can pass as content."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from analyses.base import TrainedRun
from analyses.head_scores import HeadScores, detection_patterns, mul_score, probe_periods
from tasks import TASKS


def test_detection_patterns_of_a_hand_written_sequence():
    patterns = detection_patterns(torch.tensor([0, 5, 6, 5, 6]))
    assert patterns["previous_token"].nonzero().tolist() == [[1, 0], [2, 1], [3, 2], [4, 3]]
    assert patterns["duplicate_token"].nonzero().tolist() == [[3, 1], [4, 2]]  # 5 at 3 saw 5 at 1; 6 at 4 saw 6 at 2
    assert patterns["induction"].nonzero().tolist() == [[3, 2], [4, 3]]  # the token after each earlier copy


def test_mul_score_excludes_bos_and_the_current_token_and_divides_by_the_rest():
    pattern = torch.zeros(4, 4)
    pattern[3, 1] = 1
    attention = torch.tensor([[1.0, 0, 0, 0], [0.5, 0.5, 0, 0], [0.2, 0.3, 0.5, 0], [0.1, 0.6, 0.1, 0.2]])
    # off BOS and the diagonal: rows 2 (0.3) and 3 (0.6 + 0.1); on the pattern: 0.6
    assert mul_score(attention, pattern) == pytest.approx(0.6 / 1.0)
    assert attention[3, 0] == 0.1, "the caller's attention is left as it was"


class FixedOffset(nn.Module):
    """Every head of one layer attends exactly `offset` back (or to BOS when that is before it)."""

    def __init__(self, offset: int) -> None:
        super().__init__()
        self.offset = offset
        self.blocks = nn.ModuleList()

    def attention_patterns(self, tokens):
        length = tokens.shape[1]
        keys = torch.arange(length) - self.offset
        keys = torch.where(keys >= 0, keys, torch.zeros_like(keys))
        return [nn.functional.one_hot(keys, length).float().expand(tokens.shape[0], 2, length, length)]


def measure(model: nn.Module, task) -> dict[tuple[str, str], float]:
    run = TrainedRun(model, task, None, torch.device("cpu"), lambda name: torch.Generator().manual_seed(0), None, None)
    return {(row["head"], row["pattern"]): row["score"] for row in HeadScores(probe_sequences=16).measure(run).rows}


def test_a_previous_token_head_scores_one():
    scores = measure(FixedOffset(1), TASKS["induction"](seq_len=64, vocab_size=64))
    assert scores["L0H0", "previous_token"] == 1.0 and scores["L0H0", "induction"] < 0.1


def test_a_positional_head_cannot_pass_as_a_duplicate_token_head_on_fixed_copy():
    task = TASKS["copy"](seq_len=32, vocab_size=16)
    old_probe = torch.cat([torch.zeros(1, dtype=torch.long), torch.arange(1, 16), torch.arange(1, 16)])  # period 15
    looks_15_back = FixedOffset(15).attention_patterns(old_probe[None])[0][0, 0]
    assert mul_score(looks_15_back, detection_patterns(old_probe)["duplicate_token"]) == 1.0, "the old probe's period fooled it"
    scores = measure(FixedOffset(15), task)
    assert scores["L0H0", "duplicate_token"] < 0.2 and scores["L0H0", "induction"] < 0.2


def test_probe_periods_avoid_every_fixed_offset_by_more_than_one():
    periods = probe_periods(64, (16, 30), 200, torch.Generator().manual_seed(0))
    assert periods and all(abs(period - offset) > 1 for period in periods for offset in (16, 30))
    assert min(periods) >= 14 and max(periods) <= 28 and len(set(periods)) > 5, "the longer half of the feasible periods"
    assert probe_periods(6, (2,), 4, torch.Generator()) == []
