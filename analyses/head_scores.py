"""Head scores: how much of each head's attention follows the previous-token, duplicate-token and
induction patterns (TransformerLens's head detector, ``error_measure="mul"``).

For a probe sequence t_0 .. t_(T-1) and a head's attention a_ij (query i, key j <= i):

    P_prev[i, j] = 1 if j = i - 1                     previous token
    P_dup[i, j]  = 1 if t_j = t_i and j < i           an earlier copy of my token
    P_ind[i, j]  = 1 if t_(j-1) = t_i and 1 <= j <= i  the token after an earlier copy of my token

    score = sum_ij a'_ij P[i, j] / sum_ij a'_ij,   a' = a with the BOS column (j = 0) and the
                                                   current token (j = i) set to 0, as
                                                   detect_head(exclude_bos=True, exclude_current_token=True)

averaged over ``probe_sequences`` sequences (TransformerLens averages per prompt, too). The
weights are read as shares, |a_ij| / sum_j |a_ij| (``TrainedRun.attention_shares``): the same for
softmax attention, and for sigmoid's gates or differential's signed w1 - lambda w2 the share of the
row's weight, of either sign, that the pattern holds, so every score lies in [0, 1]. The
denominator holds every query's attention off BOS and the diagonal, including the first copy's,
where no pattern applies: an induction head that parks on BOS there scores near 1, one whose
attention spreads there (the hand-coded circuit's) about 0.6.

The probe is [BOS] + R + R, R random content tokens, with a period |R| drawn per sequence from
the half of the feasible periods nearest the training length, skipping any period within 1 of
a distance at which the training task always placed its answer (the task's fixed offsets). A
fixed period tied to the training task lets a purely positional head score as content: on fixed
copy at length 32 a head that always looks 15 back scored duplicate-token 1.0 on the old probe of
period 15. Heads are labelled L{layer}H{head}. A high score says what a head attends to, not that
the model uses it: the ablation analysis (analyses/ablation.py) says which heads the answer needs.
"""
from __future__ import annotations

from typing import Annotated

import pandas as pd
import torch
from omegaconf import DictConfig
from torch import Tensor

from analyses.base import Analysis, Block, Figure, Measurement, SectionData, TrainedRun
from plugin.plotting import bars_with_points
from plugin.statistics import INTERVAL_NOTE, describe
from plugin import Range

UNIT = Range(0, 1)
INDEX = Range(0)

PATTERNS = ("previous_token", "duplicate_token", "induction")


def allowed_periods(length: int, fixed_offsets: tuple[int, ...]) -> list[int]:
    """Repeat periods for probes of at most `length` tokens, none within 1 of a fixed offset."""
    longest = (length - 1) // 2
    allowed = [n for n in range(2, longest + 1) if all(abs(n - offset) > 1 for offset in fixed_offsets)]
    return allowed[len(allowed) // 2 :]  # the longer half: probes near the training length


def probe_periods(length: int, fixed_offsets: tuple[int, ...], count: int, generator: torch.Generator) -> list[int]:
    """`count` periods drawn from the allowed ones."""
    allowed = allowed_periods(length, fixed_offsets)
    if not allowed:
        return []
    picks = torch.randint(len(allowed), (count,), generator=generator)
    return [allowed[i] for i in picks.tolist()]


def detection_patterns(tokens: Tensor) -> dict[str, Tensor]:
    """The three patterns of a sequence (T,), each (T, T) float, lower triangular."""
    length = tokens.shape[0]
    earlier = torch.ones(length, length, dtype=torch.bool).tril(-1)
    duplicate = (tokens[:, None] == tokens[None, :]) & earlier
    induction = torch.zeros_like(duplicate)
    induction[:, 1:] = duplicate[:, :-1]
    induction &= torch.ones(length, length, dtype=torch.bool).tril()
    previous = torch.zeros_like(duplicate)
    previous[1:, :-1] = torch.eye(length - 1, dtype=torch.bool)
    return {"previous_token": previous.float(), "duplicate_token": duplicate.float(), "induction": induction.float()}


def mul_score(attention: Tensor, pattern: Tensor) -> float:
    """TransformerLens's mul score of one head on one sequence, BOS column and current token excluded."""
    kept = attention.clone()  # shares: non-negative
    kept[:, 0] = 0
    kept.fill_diagonal_(0)
    total = kept.sum()
    return (kept * pattern).sum().item() / total.item() if total > 0 else float("nan")


class HeadScores(Analysis):
    name = "head_scores"
    title = "Head scores"
    report_order = 40

    def __init__(self, *, probe_sequences: Annotated[int, Range(1, 1024)] = 16) -> None:
        self.probe_sequences = probe_sequences

    def applies(self, run: TrainedRun) -> str | None:
        if len(run.task.content_tokens) < 2:
            return "the task has fewer than two content tokens to build a probe from"
        if not allowed_periods(run.task.seq_len, run.task.fixed_offsets):
            return f"no [BOS]+R+R probe period fits seq_len={run.task.seq_len} away from the task's fixed offsets {run.task.fixed_offsets}"
        return None

    def ranges(self, config: DictConfig | None = None) -> dict[str, Range]:
        if config is None:
            return {"score": UNIT, "layer": INDEX, "head_index": INDEX}
        return {"score": UNIT, "layer": Range(0, config.model.n_layers - 1), "head_index": Range(0, config.model.n_heads - 1)}

    def measure(self, run: TrainedRun) -> Measurement:
        generator = run.stream(f"analysis/{self.name}")
        periods = probe_periods(run.task.seq_len, run.task.fixed_offsets, self.probe_sequences, generator)
        content = torch.tensor(run.task.content_tokens)
        totals: dict[tuple[int, int, str], float] = {}
        for period in periods:
            repeated = content[torch.randint(len(content), (period,), generator=generator)]
            tokens = torch.cat([torch.zeros(1, dtype=torch.long), repeated, repeated])
            patterns = detection_patterns(tokens)
            for layer, shares in enumerate(run.attention_shares(tokens[None])):
                for head in range(shares.shape[1]):
                    for name, pattern in patterns.items():
                        key = (layer, head, name)
                        totals[key] = totals.get(key, 0.0) + mul_score(shares[0, head], pattern.double())
        rows = [{"head": f"L{layer}H{head}", "layer": layer, "head_index": head, "pattern": name, "score": total / len(periods)}
                for (layer, head, name), total in totals.items()]  # fmt: skip
        return Measurement(rows)

    def section(self, data: SectionData) -> list[Block]:
        rows = data.rows
        best = rows.loc[rows.groupby(["run", "pattern"])["score"].idxmax()]
        roles = (
            best.groupby(["setting", "task", "pattern"])
            .apply(lambda group: pd.Series({"score": describe(group["score"], bounds=self.bounds("score")),
                                            "heads": ", ".join(f"{h}×{n}" for h, n in group["head"].value_counts().items())}),
                   include_groups=False)
            .reset_index()
        )  # fmt: skip
        path = bars_with_points(best, "score", col="pattern", row="task", value_label="best head's score", path=data.figure_path("best"))
        return [
            "Each run's highest-scoring head per pattern (scores in [0, 1], TransformerLens's mul convention on attention shares "
            "|a| / Σ|a|, which for signed or gated weights is the share of the row's weight on the pattern; BOS and "
            "the current token excluded, on [BOS] + R + R probes of periods away from the task's fixed offsets). "
            f"Score: {INTERVAL_NOTE}; heads: which head was best, × the number of seeds where it was "
            "(heads are not matched across seeds). A score says where a head looks, not that the answer needs it: "
            "the head ablations say that.",
            roles,
            Figure(path, "Best head's score per pattern: bar, mean over seeds with its 95% interval; dots, seeds."),
        ]
