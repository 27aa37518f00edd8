"""`python -m bench.experiments.evaluate_handcoded`: the hand-coded induction circuit measured at
full size.

Every figure comes from the project's own pieces: configs composed as on the command line, the
model built by ``build_model`` (whose construction refuses what it cannot honour), test accuracy
from the training loop run for 0 steps (the evaluation ``python -m bench`` records), head scores
from the ``head_scores`` analysis. Prints one Markdown table: what is measured, the configuration, the figure and
its target. About a minute on a 2-core CPU; batches are small because the logits over 50257
tokens are large (batch x T x 50257 floats).
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from omegaconf import DictConfig

from analyses.head_scores import HeadScores
from bench.core.config import build_model, build_task
from bench.core.config import compose_config as compose_project_config
from bench.core.measure import trained_run
from bench.core.model import Transformer
from bench.core.train import train
from variants import VARIANTS

VARIANT = "variant=handcoded_induction"
# Vocabulary 50257 with random codes in k = (97 - 1) / 3 = 32 dimensions, one head per layer.
LARGE_VOCABULARY = ("task=induction", "task.vocab_size=50257", "model.d_model=97", "model.n_heads=1")


def compose_config(*overrides: str) -> DictConfig:
    """The hand-coded variant's config (the K-composition circuit unless `overrides` name another) with
    `overrides`, composed as `python -m bench` does."""
    variant = [] if any(override.startswith("variant=") for override in overrides) else [VARIANT]
    return compose_project_config([*variant, "train.progress=false", *overrides])


def repeat_probe(n: int, *overrides: str) -> DictConfig:
    """[BOS] + R + R with |R| = n, in a context exactly that long."""
    seq_len = 2 * n + 1
    return compose_config("task=induction", "task.layout=repeat", f"task.seq_len={seq_len}", f"model.max_seq_len={seq_len}", *overrides)


def build(cfg: DictConfig) -> Transformer:
    torch.manual_seed(cfg.seed)  # the codes come from the global RNG, as in a run
    return build_model(cfg)


def accuracy(cfg: DictConfig) -> float:
    """Test accuracy on the task's scored positions, after cfg.train.steps (0 unless fine-tuning)."""
    model = build(cfg)
    steps = cfg.train.steps if model.trainable else 0
    return train(model, build_task(cfg), cfg.train, cfg.seed, torch.device("cpu"), False, steps).evaluations["test"].accuracy


@torch.no_grad()
def previous_token_mass(cfg: DictConfig) -> float:
    """Least attention layer 0 head 0 puts on position m - 1, over every m >= 1 of a full-context sequence."""
    model = build(cfg).eval()
    generator = torch.Generator().manual_seed(cfg.seed)
    tokens = torch.randint(cfg.task.vocab_size, (1, cfg.model.max_seq_len), generator=generator)
    weights = model.attention_patterns(tokens)
    return weights[0][:, 0].diagonal(offset=-1, dim1=-2, dim2=-1).min().item()


def circuit_head_scores(cfg: DictConfig, probe_sequences: int) -> dict[str, dict[str, float]]:
    """The head_scores analysis of a model built from cfg: {head: {pattern: score}}."""
    run = trained_run(build(cfg), build_task(cfg), cfg, torch.device("cpu"))
    scores: dict[str, dict[str, float]] = {}
    for row in HeadScores(probe_sequences=probe_sequences).measure(run).rows:
        scores.setdefault(row["head"], {})[row["pattern"]] = row["score"]
    return scores


def measurements() -> Iterator[tuple[str, str, float, str]]:
    """(measure, configuration, figure, target) for every target of the issue, at full size."""
    for context in (1024, 2049):
        cfg = compose_config(*LARGE_VOCABULARY, f"model.max_seq_len={context}", f"task.seq_len={context}")
        yield ("previous-token mass on m-1, min over m", f"context {context}", previous_token_mass(cfg), ">= 0.99")
    batches = {256: ("train.batch_size=4", "train.eval_batches=4"), 1024: ("train.batch_size=1", "train.eval_batches=8")}
    for n, target in ((256, ">= 0.99"), (1024, ">= 0.97")):
        cfg = repeat_probe(n, *LARGE_VOCABULARY, *batches[n])
        yield ("induction accuracy, [BOS]+R+R", f"vocab 50257 (random codes, k 32), n {n}", accuracy(cfg), target)
    one_hot = repeat_probe(64, "task.vocab_size=64", "model.d_model=193", "model.n_heads=1", "train.batch_size=8")
    yield ("induction accuracy, [BOS]+R+R", "vocab 64 (one-hot codes, k 64), n 64", accuracy(one_hot), "1.000")
    gaps = compose_config(
        *LARGE_VOCABULARY, "task.seq_len=1029", "model.max_seq_len=1029", "train.batch_size=4", "train.eval_batches=16"
    )  # segments of 4..16 tokens copied 4..1024 positions later
    yield ("induction task, random gaps", "vocab 50257, gaps up to 1024", accuracy(gaps), ">= 0.95")
    for ablation in ("layer0_ov", "layer1_ov"):
        cfg = repeat_probe(256, *LARGE_VOCABULARY, *batches[256], f"variant.ablate={ablation}")
        yield (f"ablation {ablation}: induction accuracy", "vocab 50257, n 256", accuracy(cfg), "near chance (2e-5)")
    scores = circuit_head_scores(repeat_probe(256, *LARGE_VOCABULARY), probe_sequences=4)
    yield ("head score L0H0 previous_token", "vocab 50257, n 256", scores["L0H0"]["previous_token"], "~1")
    yield ("head score L1H0 induction", "vocab 50257, n 256", scores["L1H0"]["induction"], "~1")
    for task in ("copy", "induction"):
        yield (f"default sweep config: {task} accuracy", "d_model 64, 4 heads, k 21", accuracy(compose_config(f"task={task}")), "—")
    q_circuit = ("variant=handcoded_q_induction", "task=induction", "task.seq_len=64", *VARIANTS["handcoded_q_induction"].required_config)
    for ablation, target in (("none", "1.000"), ("layer0_ov", "near chance (1/63)"), ("layer1_ov", "near chance (1/63)")):
        cfg = compose_config(*q_circuit, f"variant.ablate={ablation}")
        yield (f"Q-composition circuit, ablation {ablation}: induction accuracy", "vocab 64 (random codes, k 32), gaps up to 57", accuracy(cfg), target)


def main() -> None:
    print("| measure | configuration | figure | target |\n|---|---|---|---|")
    for measure, configuration, figure, target in measurements():
        print(f"| {measure} | {configuration} | {figure:.5f} | {target} |", flush=True)


if __name__ == "__main__":
    main()
