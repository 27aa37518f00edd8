"""Training, evaluation and the result record of one job."""
from __future__ import annotations

import json
import math
from importlib import metadata

import pytest
import torch
from torch import nn

from bench.core.config import build_model, build_task
from bench.core.job import run
from bench.core.train import GrokfastEMA, evaluate, learning_rate_factor, make_optimizer, scored_loss, stream, train
from tasks import IGNORE_INDEX, Batch
from test_launchers import without_timing


def test_warmup_then_cosine_to_the_floor():
    factors = [learning_rate_factor(step, warmup_steps=10, total_steps=110, min_ratio=0.1) for step in range(111)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[60] == pytest.approx(0.55)
    assert factors[110] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))


def test_loss_counts_only_scored_positions_and_is_zero_without_any():
    logits = torch.zeros(1, 3, 4)
    targets = torch.tensor([[IGNORE_INDEX, 2, IGNORE_INDEX]])
    assert scored_loss(logits, targets).item() == pytest.approx(math.log(4))
    assert scored_loss(logits, torch.full((1, 3), IGNORE_INDEX)).item() == 0


def test_streams_are_independent_reproducible_and_take_any_seed():
    assert torch.equal(torch.rand(4, generator=stream(3, "test")), torch.rand(4, generator=stream(3, "test")))
    draws = {name: torch.rand(4, generator=stream(3, name)) for name in ("train", "validation", "test")}
    assert not torch.equal(draws["train"], draws["validation"]) and not torch.equal(draws["validation"], draws["test"])
    assert not torch.equal(torch.rand(4, generator=stream(4, "test")), draws["test"])
    torch.rand(1, generator=stream(2**63 - 1, "train"))  # the largest seed the config allows


class Oracle(nn.Module):
    """Predicts the next input token: perfect on every next-token task."""

    def __init__(self, vocab_size: int, wrong_rows: int = 0) -> None:
        super().__init__()
        self.vocab_size, self.wrong_rows = vocab_size, wrong_rows

    def forward(self, tokens):
        following = torch.roll(tokens, -1, dims=1)
        following[: self.wrong_rows] = (following[: self.wrong_rows] + 1) % self.vocab_size
        return nn.functional.one_hot(following, self.vocab_size).float() * 50


def test_evaluation_of_a_perfect_and_a_partly_wrong_model_with_slices(make_config):
    task = build_task(make_config("task=copy", "task.variable_length=true"))
    batch = task.sample(8, torch.Generator().manual_seed(0))
    perfect = evaluate(Oracle(task.vocab_size), batch, chunk=3)
    assert (perfect.loss, perfect.accuracy, perfect.exact_match) == (pytest.approx(0, abs=1e-6), 1.0, 1.0)
    assert perfect.scored == (batch.targets != IGNORE_INDEX).sum()
    assert {row["slice"] for row in perfect.slices} == {"length", "index"}
    assert all(row["correct"] == row["scored"] for row in perfect.slices)
    lengths = {row["value"]: row["scored"] for row in perfect.slices if row["slice"] == "length"}
    assert sum(lengths.values()) == perfect.scored and all(scored % length == 0 for length, scored in lengths.items())
    half_wrong = evaluate(Oracle(task.vocab_size, wrong_rows=4), batch, chunk=8)
    assert half_wrong.exact_match == 0.5


def test_weight_decay_spares_biases_gains_and_scalars(make_config):
    cfg = make_config("variant=triple", "variant.learnable_temperature=true", "model.layer_norm=true", "model.mlp=true")
    model = build_model(cfg)
    optimizer, _ = make_optimizer(model, cfg.train)
    decayed, spared = optimizer.param_groups
    assert decayed["weight_decay"] == cfg.train.weight_decay and spared["weight_decay"] == 0
    names = {id(p): n for n, p in model.named_parameters()}
    spared_names = {names[id(p)] for p in spared["params"]}
    assert any("log_temperature" in n for n in spared_names) and any(n.endswith(".bias") for n in spared_names)
    assert any("norm" in n for n in spared_names)
    assert all(p.ndim >= 2 for p in decayed["params"]) and "embed.weight" in {names[id(p)] for p in decayed["params"]}
    assert optimizer.defaults["betas"] == (cfg.train.beta1, cfg.train.beta2)


def test_the_curve_records_the_rate_each_step_used(make_config, tiny):
    cfg = make_config(*tiny, "train.steps=20", "train.eval_every=5", "train.warmup_steps=10", "train.target_accuracy=null")
    torch.manual_seed(0)
    outcome = train(build_model(cfg), build_task(cfg), cfg.train, 0, torch.device("cpu"), False, 20)
    rates = {point["step"]: point["lr"] for point in outcome.curve}
    assert rates[5] == pytest.approx(cfg.train.lr * 5 / 10), "step 5 (the fifth step, index 4) ran at 5/10 of the rate"
    assert rates[10] == pytest.approx(cfg.train.lr), "step 10 ran at the full rate"


def test_non_finite_loss_is_recorded_as_diverged(make_config):
    cfg = make_config("train.steps=50", "train.eval_every=10")

    class Exploding(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(1))

        def forward(self, tokens):
            return torch.full((*tokens.shape, 16), float("nan")) * self.weight

    outcome = train(Exploding(), build_task(cfg), cfg.train, seed=0, device=torch.device("cpu"), progress=False, steps=50)
    assert outcome.status == "diverged" and outcome.steps_run == 1


def test_a_job_writes_a_complete_result_and_stops_early_on_validation(make_config, tiny, tmp_path):
    cfg = make_config(*tiny, "model.n_layers=1", "train.steps=400", "train.eval_every=25", "task.seq_len=16")
    record = run(cfg, tmp_path, single_run=False, overrides=["task.seq_len=16"])
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved == json.loads(json.dumps(record, default=str))
    assert saved["status"] == "completed" and saved["metrics"]["test"]["accuracy"] >= 0.99
    assert saved["metrics"]["validation"]["accuracy"] >= 0.99 and saved["metrics"]["test"]["scored"] > 0
    assert saved["steps_to_target"]["validation"] is not None and saved["steps_run"] == saved["steps_to_target"]["validation"] + 25
    assert saved["steps_run"] < 400, "early stop once validation held the target for target_hold evaluations"
    point = saved["curve"][-1]
    assert [p["step"] for p in saved["curve"]][:3] == [0, 25, 50]
    assert {"validation_accuracy", "test_accuracy", "train_loss", "train_accuracy", "tokens_per_s", "load_1min", "cpu_share"} <= point.keys()
    assert point["test_accuracy"] == saved["metrics"]["test"]["accuracy"]
    assert saved["config"]["model"]["n_layers"] == 1 and saved["overrides"] == ["task.seq_len=16"]
    assert saved["n_params"] == sum(p.numel() for p in nn.Linear(32, 4 * 32, bias=False).parameters()) + 2 * 16 * 32
    assert saved["train_tokens_per_s"] > 0 and saved["wall_time_s"] > 0 and saved["chance_accuracy"] == 1 / 16
    assert saved["environment"]["versions"]["torch"] == metadata.version("torch")
    assert len(saved["config_hash"]) == 16 and set(saved["code"]) == {"core", "variants", "tasks"}
    assert {row["slice"] for row in saved["test_slices"]} == {"length", "index"}
    assert (tmp_path / "model.safetensors").exists() and saved["analyses"]["length_generalisation"] == "completed"
    assert not list(tmp_path.rglob(".*.tmp"))


def test_validation_and_test_sets_differ_and_test_is_never_used_to_stop(make_config, tiny, tmp_path):
    cfg = make_config(*tiny, "task=induction", "train.steps=30", "train.eval_every=10")
    record = run(cfg, tmp_path, single_run=False, overrides=[])
    assert record["metrics"]["validation"] != record["metrics"]["test"]
    task = build_task(cfg)
    size = cfg.train.eval_batches * cfg.train.batch_size
    validation, test = (task.evaluation_set(split, size, stream(cfg.seed, split)) for split in ("validation", "test"))
    assert not torch.equal(validation.inputs, test.inputs)


def test_same_seed_gives_identical_results_on_cpu(make_config, tiny, tmp_path):
    cfg = make_config(*tiny, "task=induction", "train.steps=30", "train.eval_every=10")
    first = run(cfg, tmp_path / "a", single_run=False, overrides=[])
    second = run(cfg, tmp_path / "b", single_run=False, overrides=[])
    assert [without_timing(p) for p in first["curve"]] == [without_timing(p) for p in second["curve"]]
    assert first["metrics"] == second["metrics"]
    other_seed = run(make_config(*tiny, "task=induction", "train.steps=30", "train.eval_every=10", "seed=1"), tmp_path / "c", single_run=False, overrides=[])
    assert other_seed["metrics"] != first["metrics"]


def test_a_failing_job_is_recorded_and_a_single_run_re_raises(make_config, tiny, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr("bench.core.job.train", broken)
    cfg = make_config(*tiny, "train.steps=5")
    record = run(cfg, tmp_path / "sweep_job", single_run=False, overrides=[])
    assert record["status"] == "failed" and record["error"] == "RuntimeError: out of memory (simulated)"
    assert "Traceback" in record["traceback"]
    with pytest.raises(RuntimeError):
        run(cfg, tmp_path / "single", single_run=True, overrides=[])
    assert json.loads((tmp_path / "single" / "result.json").read_text())["status"] == "failed"


def test_batch_moves_with_its_slices():
    batch = Batch(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long), {"gap": torch.ones(2, 3, dtype=torch.long)})
    moved = batch.to("meta")
    assert moved.inputs.is_meta and moved.slices["gap"].is_meta and len(moved) == 2


def test_grokfast_adds_lambda_times_the_gradients_moving_average():
    parameter = nn.Parameter(torch.zeros(2))
    grokfast = GrokfastEMA(alpha=0.5, weight=2.0)
    parameter.grad = torch.tensor([1.0, -1.0])
    grokfast([parameter])
    assert parameter.grad.tolist() == [3.0, -3.0]  # the average starts at the first gradient: g + 2 g
    parameter.grad = torch.tensor([3.0, 1.0])
    grokfast([parameter])
    assert parameter.grad.tolist() == [3.0 + 2 * 2.0, 1.0 + 2 * 0.0]  # average 0.5 (1, -1) + 0.5 (3, 1) = (2, 0)


@pytest.mark.slow  # compiling costs seconds to tens of seconds
def test_a_compiled_training_step_trains_as_the_eager_one_does(make_config, tiny):
    """train.compile=true compiles the training step: the same losses as eager, to float32 rounding."""
    losses = {}
    for compiled in ("false", "true"):
        cfg = make_config(*tiny, "train.steps=5", "train.eval_every=5", "train.target_accuracy=null", f"train.compile={compiled}")
        torch.manual_seed(0)
        outcome = train(build_model(cfg), build_task(cfg), cfg.train, cfg.seed, torch.device("cpu"), progress=False, steps=5)
        losses[compiled] = [outcome.curve[-1]["train_loss"], outcome.curve[-1]["validation_loss"]]
    assert losses["true"] == pytest.approx(losses["false"], rel=1e-4)
