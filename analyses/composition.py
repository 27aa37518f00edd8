"""Composition scores between heads of different layers (Elhage et al. 2021, "A Mathematical
Framework for Transformer Circuits"; as TransformerLens's ``all_composition_scores`` computes them).

In TransformerLens's right-multiplying convention (x a row of the stream), head h has the OV
circuit W_V^h W_O^h and the QK circuit W_Q^h (W_K^h)^T, both (d_model, d_model). For an earlier
head a (layer l) and a later head b (layer l' > l), with L = W_V^a W_O^a what a writes:

    C(L, R) = ||L R||_F / (||L||_F ||R||_F)
    Q-composition: R = W_Q^b (W_K^b)^T       a's output feeds b's queries
    K-composition: R = W_K^b (W_Q^b)^T       a's output feeds b's keys
    V-composition: R = W_V^b W_O^b           a's output feeds b's values

A score means something only against what trained weights give without composing. A pair of
random matrices is no such null: trained weights are low-rank and share the run's embedding
directions, so any two heads of a trained run score well above random ones (standard on fixed
copy, which needs no composition, scored 0.54, twice standard on induction). The null is built
from trained models, at report time, from the circuits each run saves:

    across seeds   the best pair's score with the earlier head from one run and the later head from
                   another run of the same setting and task (every ordered pair of runs): trained
                   weights of the same shapes, spectra and training, whose heads never composed
    no-composition the best pair's score within runs of the same setting on a task that the
                   positional control solves, which position alone answers

A constructed model (weights set by hand, the same model in every seed) has no null of its own: it
is placed in the trained settings' nulls at the same task. The report places each run's best pair in
its null: the share of the null at or above it, and the
seeds where it lies above the null's 95th percentile. A run "composes mainly by X-composition"
only where, in most seeds (80%), its best X pair lies above that percentile and removing that pair
halves accuracy while removing as many other pairs does not (analyses/ablation.py), where its X
and the other modes' intervals do not overlap, and where the positional control does not solve
the task. A head that writes nothing (||L|| = 0) has no score (null).

Rotary: with RoPE the bilinear form between query i and key j is W_Q R_(j-i) W_K^T, so W_Q W_K^T
is only its position-free part (relative offset 0); a head that matches through slow rotary
pairs keeps most of it, one that relies on fast pairs does not. Layer norms are not folded in
(the default model has none). It applies to models of two or more layers whose variant exposes
its per-head matrices (a bilinear score of the stream).
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig
from torch import Tensor

from analyses.ablation import MOST, claim_tests
from analyses.base import Analysis, Block, Figure, Measurement, SectionData, TrainedRun
from plugin import Range
from plugin.plotting import pyplot, save
from plugin.statistics import INTERVAL_NOTE, describe, interval
from tasks import TASKS

MODES = ("K", "Q", "V")


def composition_scores(left: Tensor, right: Tensor) -> Tensor:
    """||L R||_F / (||L||_F ||R||_F) for left (..., n, n) and right (..., n, n), broadcast."""
    product = torch.linalg.matrix_norm(left @ right)
    return product / (torch.linalg.matrix_norm(left) * torch.linalg.matrix_norm(right))


def circuits(matrices) -> dict[str, Tensor]:
    """The per-head right-hand circuits of each mode and the OV circuit, each (heads, d_model, d_model)."""
    qk = matrices.W_Q @ matrices.W_K.transpose(-2, -1)
    ov = matrices.W_V @ matrices.W_O
    return {"Q": qk, "K": qk.transpose(-2, -1), "V": ov, "OV": ov}


class Composition(Analysis):
    name = "composition"
    title = "Composition scores"
    report_order = 50

    def applies(self, run: TrainedRun) -> str | None:
        if len(run.attention_layers) < 2:
            return "composition needs two layers or more"
        if any(layer.head_matrices() is None for layer in run.attention_layers):
            return "the variant's scores are not a bilinear form of the stream (no per-head W_Q, W_K, W_V, W_O)"
        return None

    def ranges(self, config: DictConfig | None = None) -> dict[str, Range]:
        """||L R||_F <= ||L||_F ||R||_F (the Frobenius norm is submultiplicative): scores lie in [0, 1]."""
        layers = Range(0) if config is None else Range(0, config.model.n_layers - 1)
        return {"score": Range(0, 1), "left_layer": layers, "right_layer": layers}

    def measure(self, run: TrainedRun) -> Measurement:
        per_layer = [layer.head_matrices() for layer in run.attention_layers]
        layer_circuits = [{mode: circuit.double().cpu() for mode, circuit in circuits(m).items()} for m in per_layer]
        rows = []
        for left_layer, left in enumerate(layer_circuits):
            for right_layer in range(left_layer + 1, len(layer_circuits)):
                for mode in MODES:
                    scores = composition_scores(left["OV"][:, None], layer_circuits[right_layer][mode][None])
                    for (a, b), score in zip(torch.cartesian_prod(torch.arange(scores.shape[0]), torch.arange(scores.shape[1])).tolist(), scores.flatten().tolist()):
                        rows.append({"mode": mode, "left": f"L{left_layer}H{a}", "right": f"L{right_layer}H{b}", "left_layer": left_layer,
                                     "right_layer": right_layer, "score": score})  # fmt: skip
        # the circuits, for the null across seeds that the report builds
        tensors = {f"{name}_{layer}": circuit[name].float() for layer, circuit in enumerate(layer_circuits) for name in ("OV", "Q")}
        return Measurement(rows, tensors)

    def cross_run_rows(self, data: SectionData) -> list[dict]:
        """Per ordered pair of runs of one setting and task (two seeds), the best score per mode with
        the first run's OV circuits on the left and the other's circuits on the right ("other": its
        config hash, which stays its name in any report); a run without tensors keeps the rows its
        report saved."""
        runs = data.runs[["run", "setting", "task", "config_hash"]]
        tensors = {run: data.tensors(run) for run in runs["run"]}
        saved = data.rows_of(f"{self.name}.across")
        rows = [] if saved.empty else [row for row in saved[["run", "other", "mode", "score"]].to_dict("records") if not tensors.get(row["run"])]
        for _, group in runs.groupby(["setting", "task"]):
            for (left, _), (right, other) in itertools.permutations(zip(group["run"], group["config_hash"]), 2):
                if tensors[left] and tensors[right]:
                    rows += [{"run": left, "other": other, "mode": mode, "score": score}
                             for mode, score in best_scores(tensors[left], tensors[right]).items() if not np.isnan(score)]  # fmt: skip
        return rows

    def section(self, data: SectionData) -> list[Block]:
        rows = data.rows.dropna(subset=["score"])
        best = rows.loc[rows.groupby(["run", "mode"])["score"].idxmax()]
        best = best.assign(pair=best["left"] + "→" + best["right"])
        null = trained_null(best, data.rows_of(f"{self.name}.across"), data)  # the report computed them once (cross_run_rows)
        best = best.merge(null, on=["setting", "task", "mode"], how="left")
        best = best.assign(null_share=[share_at_or_above(samples, score) for samples, score in zip(best["samples"], best["score"])],
                           above=[above_percentile(samples, score) for samples, score in zip(best["samples"], best["score"])])  # fmt: skip
        table = (
            best.groupby(["setting", "task", "mode"])
            .apply(lambda group: pd.Series({
                "best_pair": describe(group["score"], bounds=self.bounds("score")),
                "null_across_seeds": null_text(group["across_seeds"].iloc[0]),
                "null_no_composition_task": null_text(group["no_composition"].iloc[0]),
                "share_of_null_at_or_above": describe(group["null_share"], bounds=(0.0, 1.0)),
                "above_null_95th": f"{int(group['above'].sum())}/{len(group)}",
                "pairs": ", ".join(f"{pair}×{n}" for pair, n in group["pair"].value_counts().items()),
            }), include_groups=False)
            .reset_index()
        )  # fmt: skip
        blocks: list[Block] = [
            "Each run's highest-scoring pair of heads (earlier layer → later layer) per mode, "
            f"{INTERVAL_NOTE}, placed in two nulls from trained weights (module docstring): the best pair with its heads from two "
            "different seeds of the same setting and task, and the best pair within runs of the same setting on a task the "
            "positional control solves (— where the report has none); each as median [5th–95th percentile] (samples). "
            "share_of_null_at_or_above: the share of both nulls together at or above each run's best pair; above_null_95th: "
            "the seeds whose best pair lies above the 95th percentile of both together. Pairs: the best pair, × the seeds.",
            table,
            *claims(best, table, data),
        ]
        for run, title, path in data.examples():
            run_rows = rows[(rows["run"] == run.run) & (rows["left_layer"] == 0) & (rows["right_layer"] == 1)]
            if len(run_rows):
                heatmaps(run_rows, title, path)
                blocks.append(Figure(path, f"{title}: layer-0 × layer-1 composition scores per mode."))
        return blocks


def best_scores(left: dict[str, Tensor], right: dict[str, Tensor]) -> dict[str, float]:
    """The best score per mode with the earlier head's OV circuit from `left` and the later head's
    circuits from `right` (tensors saved by measure: OV_l and Q_l = W_Q W_K^T per layer l)."""
    layers = sorted(int(key.split("_")[1]) for key in left if key.startswith("OV_"))
    best = {}
    for mode in MODES:
        scores = [composition_scores(left[f"OV_{a}"].double()[:, None], right_circuit(right, mode, b)[None]).flatten()
                  for a in layers for b in layers if b > a]  # fmt: skip
        scored = torch.cat(scores) if scores else torch.zeros(0)
        scored = scored[~scored.isnan()]  # a head that writes nothing has no score
        best[mode] = scored.max().item() if len(scored) else float("nan")
    return best


def right_circuit(tensors: dict[str, Tensor], mode: str, layer: int) -> Tensor:
    circuit = {"Q": tensors[f"Q_{layer}"], "K": tensors[f"Q_{layer}"].transpose(-2, -1), "V": tensors[f"OV_{layer}"]}[mode]
    return circuit.double()


def trained_null(best: pd.DataFrame, across: pd.DataFrame, data: SectionData) -> pd.DataFrame:
    """Per setting x task x mode, the null's samples (module docstring): the best pairs across the
    setting's seeds (`across`, Composition.cross_run_rows), and within its runs on tasks the
    positional control solves; for a constructed setting, those of the trained settings."""
    solved_by_control = {task for task, accuracy in data.control_accuracy().items() if accuracy >= getattr(TASKS.get(task), "solved_at", 1.0)}
    runs = best.drop_duplicates("run")[["run", "setting", "task"]]
    trained = sorted(set(data.runs.loc[data.runs["trained"].ne(False), "setting"])) if "trained" in data.runs else []
    rows = []
    for (setting, task), group in runs.groupby(["setting", "task"]):
        sources = [setting] if setting in trained or not trained else trained
        null_runs = runs[runs["setting"].isin(sources) & (runs["task"] == task)]["run"]
        pairs = across[across["run"].isin(null_runs)] if len(across) else across
        no_composition = best[best["setting"].isin(sources) & best["task"].isin(solved_by_control)]
        for mode in MODES:
            seeds = pairs.loc[pairs["mode"] == mode, "score"].dropna().tolist() if len(pairs) else []
            within = no_composition.loc[no_composition["mode"] == mode, "score"].dropna().tolist()
            rows.append({"setting": setting, "task": task, "mode": mode, "across_seeds": seeds, "no_composition": within, "samples": seeds + within})
    return pd.DataFrame(rows, columns=["setting", "task", "mode", "across_seeds", "no_composition", "samples"])


def placement(rows: pd.DataFrame) -> str:
    """Where a mode's mean best pair falls in each null: 'its mean 0.218 is above 100% of the null
    across seeds and 0% of the no-composition null'."""
    score = rows["score"].mean()
    parts = [f"{1 - share_at_or_above(rows[column].iloc[0], score):.0%} of the {name}" for column, name in
             (("across_seeds", "null across seeds"), ("no_composition", "no-composition null")) if rows[column].iloc[0]]  # fmt: skip
    return f"its mean {score:.3f} is above " + " and ".join(parts) if parts else f"its mean {score:.3f} has no null to fall in"


def share_at_or_above(samples: list[float], score: float) -> float:
    return float(np.mean(np.asarray(samples) >= score)) if samples else float("nan")


def above_percentile(samples: list[float], score: float) -> bool:
    return bool(samples) and score > float(np.quantile(samples, 0.95))


def null_text(samples: list[float]) -> str:
    if not samples:
        return "—"
    low, median, high = np.quantile(samples, [0.05, 0.5, 0.95])
    return f"{median:.3f} [{low:.3f}–{high:.3f}] ({len(samples)})"


def claims(best: pd.DataFrame, table: pd.DataFrame, data: SectionData) -> list[str]:
    """One sentence per setting x task: the mode it composes by, where the module docstring's tests
    all pass, or why no composition is claimed."""
    tests = claim_tests(data.rows_of("ablation"), data.rows_of)
    pair_tests = tests[tests["role"] == "K-composition pair"] if not tests.empty else tests
    controls = data.control_accuracy()
    sentences = []
    for (setting, task), group in best.groupby(["setting", "task"]):
        seeds = group["run"].nunique()
        above = group.groupby("mode")["above"].mean()
        top = above.idxmax()
        intervals = {mode: interval(values, bounds=(0.0, 1.0)) for mode, values in group.groupby("mode")["score"]}
        separated = all(intervals[top].low > intervals[mode].high for mode in intervals if mode != top)
        needed = pair_tests[(pair_tests["setting"] == setting) & (pair_tests["task"] == task)] if not pair_tests.empty else pair_tests
        control = controls.get(task)
        if control is not None and control >= getattr(TASKS.get(task), "solved_at", 1.0):
            reason = f"the positional control solves {task} ({control:.3f}), so it needs no composition"
        elif above[top] < MOST:
            reason = (f"no mode's best pair lies above the trained-weights null in {MOST:.0%} of the seeds (best: {top}, "
                      f"{above[top]:.0%}; {placement(group[group['mode'] == top])})")
        elif not separated:
            reason = f"{top}'s interval overlaps another mode's"
        elif top != "K":
            reason = f"its {top}-composition pair is not tested by ablation (only the K pair is)"
        elif needed.empty or needed["needed"].mean() < MOST:
            reason = "ablating its best K pair does not halve accuracy while as many other pairs leave it, in most seeds"
        else:
            sentences.append(f"{setting} on {task} composes mainly by K-composition: its best K pair lies above the trained-weights "
                             f"null in {above['K']:.0%} of {seeds} seeds, apart from the Q and V intervals, and removing it takes "
                             f"accuracy from {needed['intact'].mean():.3f} to {needed['ablated'].mean():.3f} "
                             f"(as many other pairs: {needed['others'].mean():.3f}).")  # fmt: skip
            continue
        sentences.append(f"{setting} on {task}: no composition claim: {reason}.")
    return sentences


def heatmaps(rows: pd.DataFrame, title: str, path):
    plt = pyplot()
    figure, axes = plt.subplots(1, len(MODES), figsize=(3.6 * len(MODES), 3.2), squeeze=False, constrained_layout=True)
    image = None
    for axis, mode in zip(axes[0], MODES):
        grid = rows[rows["mode"] == mode].pivot(index="left", columns="right", values="score")
        image = axis.imshow(grid.to_numpy(dtype=float), cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        axis.set_xticks(range(grid.shape[1]), grid.columns, rotation=90, fontsize=8)
        axis.set_yticks(range(grid.shape[0]), grid.index, fontsize=8)
        axis.set_title(f"{mode}-composition", fontsize=10)
        axis.grid(False)
    axes[0][0].set_ylabel("earlier head (writes)")
    axes[0][len(MODES) // 2].set_xlabel("later head (reads)")
    figure.colorbar(image, ax=axes, shrink=0.8, label="composition score")
    figure.suptitle(title, fontsize=10)
    return save(figure, path)
