"""Head ablations: which heads the answer needs (mean ablation, as in Wang et al. 2022,
"Interpretability in the Wild", arXiv:2211.00593, and TransformerLens's ablation demos; Olsson
et al. 2022 test induction heads by removing them).

Head h of a layer writes z_h W_O^h, where z_h (batch, T, d_head) is what it attended to, the h-th
slice of the input of the layer's output projection. Mean ablation replaces it by its mean over
the test sequences at each position, so that the head still writes what it writes on average and
nothing about the sequence at hand:

    z_h(x)_t  ->  mean over x' of z_h(x')_t

accuracy(S) is the test accuracy with every head in S ablated at once, on ``sequences`` sequences
of the run's test set. The analysis measures the intact model, every head alone, and every pair
of heads (8 and 28 at the default 2 layers x 4 heads). A claim that a run uses a head, or a pair
of heads (a composition path, or two heads sharing one job), is then held against what could
refute it:

    needed(S)  =  accuracy(S) < accuracy(intact) / 2          (ablating S halves accuracy or worse)
    specific(S) = mean accuracy over the other sets of |S| heads >= accuracy(intact) / 2

and the report names a mechanism only where both hold in most seeds (the verdicts' MOST, 80%).
The heads under test are those other analyses name, chosen before any ablation is read: the
previous-token and the induction heads, each the head with the run's best head score for that
pattern together with any other head scoring at least half as much (at most the two best: a
trained model often spreads one job over two heads, which one head's ablation would not show),
and the composition scores' best K pair. Accuracy and loss keep their ranges,
[0, 1] and >= 0. It applies to variants whose layers write through an output projection ``out``
(an nn.Linear over the heads' concatenated outputs), which every shipped variant has.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import pandas as pd
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from analyses.base import Analysis, Block, Measurement, SectionData, TrainedRun
from plugin import Range
from plugin.statistics import INTERVAL_NOTE, describe

MOST = 0.8  # the share of seeds in which a claim must hold, as for a verdict
SHARED_JOB = 2  # the most heads named for one pattern: every pair of heads is measured, no larger set
# what the other analyses name, and where: (analysis, how to read the named heads of one run)
NAMED = {
    "previous-token head(s)": ("head_scores", "previous_token"),
    "induction head(s)": ("head_scores", "induction"),
    "K-composition pair": ("composition", "K"),
}


def head_slices(layer: nn.Module) -> list[slice] | None:
    """Each head's slice of the input of the layer's output projection, or None without one."""
    out = getattr(layer, "out", None)
    if not isinstance(out, nn.Linear) or out.in_features % layer.n_heads:
        return None
    width = out.in_features // layer.n_heads
    return [slice(head * width, (head + 1) * width) for head in range(layer.n_heads)]


@contextmanager
def ablated(layers: list[nn.Module], heads: set[tuple[int, int]], means: list[Tensor]) -> Iterator[None]:
    """Within the block, each (layer, head) in `heads` writes its mean output (means[layer]: (T, width))."""
    def replace(layer: int):
        def hook(_, args):
            z = args[0].clone()
            for head in (h for (l, h) in heads if l == layer):
                part = head_slices(layers[layer])[head]
                z[..., part] = means[layer][: z.shape[1], part].to(z.dtype)
            return (z,)

        return hook

    hooks = [layers[layer].out.register_forward_pre_hook(replace(layer)) for layer in {l for l, _ in heads}]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def mean_outputs(model: nn.Module, layers: list[nn.Module], tokens: Tensor) -> list[Tensor]:
    """Each layer's output-projection input averaged over the sequences, (T, width) per layer."""
    captured: list[Tensor | None] = [None] * len(layers)

    def keep(layer: int):
        def hook(_, args):
            captured[layer] = args[0].detach().mean(0)

        return hook

    hooks = [layer.out.register_forward_pre_hook(keep(index)) for index, layer in enumerate(layers)]
    try:
        model(tokens)
    finally:
        for hook in hooks:
            hook.remove()
    return captured


def label(heads: tuple[tuple[int, int], ...]) -> str:
    return "+".join(f"L{layer}H{head}" for layer, head in heads)


class Ablation(Analysis):
    name = "ablation"
    title = "Head ablations: which heads the answer needs"
    report_order = 55

    def __init__(self, *, sequences: Annotated[int, Range(8, 4096)] = 128) -> None:
        self.sequences = sequences

    def applies(self, run: TrainedRun) -> str | None:
        if any(head_slices(layer) is None for layer in run.attention_layers):
            return "a layer writes through no per-head output projection (`out`, an nn.Linear over the heads)"
        if sum(layer.n_heads for layer in run.attention_layers) < 2:
            return "one head: nothing to ablate it beside"
        return None

    def ranges(self, config: DictConfig | None = None) -> dict[str, Range]:
        most = Range(0) if config is None else Range(0, 2)
        return {"count": most, "accuracy": Range(0, 1), "loss": Range(0)}

    def measure(self, run: TrainedRun) -> Measurement:
        layers = run.attention_layers
        batch = run.test_set(size=self.sequences)
        means = mean_outputs(run.model, layers, batch.inputs)
        heads = [(layer, head) for layer, module in enumerate(layers) for head in range(module.n_heads)]
        sets = [()] + [(head,) for head in heads] + list(itertools.combinations(heads, 2))
        rows = []
        for chosen in sets:
            with ablated(layers, set(chosen), means):
                metrics = run.evaluate(batch)
            rows.append({"heads": label(chosen), "count": len(chosen), "accuracy": metrics["accuracy"], "loss": metrics["loss"]})
        return Measurement(rows)

    def section(self, data: SectionData) -> list[Block]:
        tests = claim_tests(data.rows, data.rows_of)
        blocks: list[Block] = [
            "Each head, and each pair of heads in different layers, mean-ablated (its output replaced by its mean over the "
            "test sequences at each position): test accuracy with the heads other analyses name removed, beside the mean "
            "over every other set of as many heads. A run uses what it names only where removing it halves accuracy or "
            f"worse while removing as many other heads does not; a mechanism is named below only where that holds in at "
            f"least {MOST:.0%} of the seeds.",
        ]
        if tests.empty:
            return blocks + ["No head is named by another analysis for these runs (head scores and composition scores not measured)."]
        controls = data.control_accuracy()
        table = (
            tests.groupby(["setting", "task", "role"])
            .apply(lambda group: pd.Series({
                "heads": ", ".join(f"{h}×{n}" for h, n in group["heads"].value_counts().items()),
                "intact": describe(group["intact"], bounds=self.bounds("accuracy")),
                "named_ablated": describe(group["ablated"], bounds=self.bounds("accuracy")),
                "others_ablated": describe(group["others"], bounds=self.bounds("accuracy")),
                "needed_in": f"{int(group['needed'].sum())}/{len(group)}",
            }), include_groups=False)
            .reset_index()
        )  # fmt: skip
        blocks += [f"Accuracy, {INTERVAL_NOTE}; heads: the head(s) named in each seed, × the seeds; needed_in: the seeds where "
                   "removing them halved accuracy and removing as many others did not.", table]
        return blocks + mechanism_sentences(tests, controls)


def named_heads(rows_of, role: str) -> pd.DataFrame:
    """(run, heads) of the heads another analysis names for `role` in each run (module docstring)."""
    source, which = NAMED[role]
    rows = rows_of(source)
    if rows.empty:
        return pd.DataFrame(columns=["run", "heads"])
    if source == "head_scores":
        rows = rows[rows["pattern"] == which].dropna(subset=["score"])
        named = {}
        for run, group in rows.groupby("run"):
            ranked = group.sort_values(["score", "layer", "head_index"], ascending=[False, True, True]).head(SHARED_JOB)
            kept = ranked[ranked["score"] >= ranked["score"].iloc[0] / 2]
            named[run] = "+".join(sorted(kept["head"], key=lambda head: (int(head[1:].split("H")[0]), int(head.split("H")[1]))))
        return pd.DataFrame({"run": list(named), "heads": list(named.values())})
    rows = rows[rows["mode"] == which].dropna(subset=["score"])
    best = rows.loc[rows.groupby("run")["score"].idxmax()]
    return pd.DataFrame({"run": best["run"], "heads": best["left"] + "+" + best["right"]})


def claim_tests(ablations: pd.DataFrame, rows_of) -> pd.DataFrame:
    """Per run and role: the named heads, intact accuracy, accuracy with them ablated, the mean over
    the other sets of as many heads, and whether the claim holds (needed and specific)."""
    tests = []
    if ablations.empty:
        return pd.DataFrame()
    for role in NAMED:
        named = named_heads(rows_of, role)
        for run, heads in zip(named["run"], named["heads"]):
            rows = ablations[ablations["run"] == run]
            count = heads.count("+") + 1
            hit, intact = rows[rows["heads"] == heads], rows[rows["count"] == 0]
            others = rows[(rows["count"] == count) & (rows["heads"] != heads)]
            if hit.empty or intact.empty or others.empty:
                continue
            base = float(intact["accuracy"].iloc[0])
            tests.append({**rows.iloc[0][["run", "setting", "task", "seed", "variant"]].to_dict(), "role": role, "heads": heads,
                          "intact": base, "ablated": float(hit["accuracy"].iloc[0]), "others": float(others["accuracy"].mean())})  # fmt: skip
    tests = pd.DataFrame(tests)
    if tests.empty:
        return tests
    return tests.assign(needed=(tests["ablated"] < tests["intact"] / 2) & (tests["others"] >= tests["intact"] / 2))


def heads_text(heads: pd.Series) -> str:
    """'L0H0+L1H0 in 5/5 seeds', or, where the seeds name different heads, each seed's: 'named per
    seed: L0H0+L0H3, L0H0+L0H2, ...' (every seed's own heads are the ones its ablation tested)."""
    counts = heads.value_counts()
    if len(counts) == 1:
        return f"{counts.index[0]} in {counts.iloc[0]}/{len(heads)} seeds"
    return "named per seed: " + ", ".join(f"{name}×{n}" if n > 1 else name for name, n in counts.items())


def mechanism_sentences(tests: pd.DataFrame, controls: dict[str, float]) -> list[str]:
    """One sentence per setting × task × role where the claim holds in most seeds, and one saying
    which named heads the ablations refuted."""
    sentences, refuted = [], []
    for (setting, task, role), group in tests.groupby(["setting", "task", "role"]):
        text = f"{setting} on {task}: the {role} ({heads_text(group['heads'])})"
        if group["needed"].mean() < MOST:
            refuted.append(f"{text}, needed in {int(group['needed'].sum())}/{len(group)}")
            continue
        control = controls.get(task)
        level = f"; the positional control scores {control:.3f}" if control is not None else ""
        sentences.append(
            f"{text} is needed: removing it takes test accuracy from {group['intact'].mean():.3f} to {group['ablated'].mean():.3f}, "
            f"removing as many other heads to {group['others'].mean():.3f}{level}."
        )
    if refuted:
        sentences.append("Named by a score but not needed by the answer, so no mechanism is claimed: " + "; ".join(refuted) + ".")
    return sentences
