"""Training, evaluation and the result record of one job."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from importlib import metadata

import pytest
import torch
from torch import nn

from bench.core.config import build_model, build_task
from bench.core.job import run
from bench.core.train import Budget, GrokfastEMA, evaluate, learning_rate_factor, loss_drop, make_optimizer, scored_loss, stream, train
from tasks import IGNORE_INDEX, Batch
from test_launchers import without_timing


def test_warmup_then_cosine_to_the_floor():
    factors = [learning_rate_factor(step, warmup_steps=10, total_steps=110, min_ratio=0.1) for step in range(111)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[60] == pytest.approx(0.55)
    assert factors[110] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))


def schedule(**changes):
    from omegaconf import OmegaConf

    return OmegaConf.create({"steps": 100, "warmup_steps": 10, "min_lr_ratio": 0.1, "schedule": "wsd", "decay_fraction": 0.2, "eval_every": 10,
                             "max_extension": 4, "plateau_window": 20, "plateau_drop": 0.05, **changes})  # fmt: skip


def curve(*losses, every=10):
    return [{"step": every * i, "validation_loss": loss} for i, loss in enumerate(losses)]


def test_wsd_holds_the_rate_until_the_run_is_judged_then_decays_linearly_to_the_floor():
    budget = Budget(schedule())
    assert budget.factor(0) == pytest.approx(0.1) and budget.factor(9) == 1.0 and budget.factor(85) == 1.0
    budget.judge(80, curve(4.0, 3.0, 2.0, 1.9, 1.9, 1.9, 1.9, 1.9, 1.9))  # flat over the last 20 steps: converged
    assert budget.status == "converged" and budget.steps == 100 and budget.decay_start == 80
    assert budget.factor(90) == pytest.approx(0.55) and budget.factor(100) == pytest.approx(0.1)


def test_a_budget_shorter_than_its_warm_up_or_evaluated_rarely_still_decays_without_a_jump():
    budget = Budget(schedule(steps=20, warmup_steps=100))
    budget.judge(10, curve(4.0, 3.9))  # the next evaluation, at 20, would be past the decay's start at 16
    assert budget.decay_start == 10 and budget.factor(9) == pytest.approx(0.1)
    assert max(budget.factor(step + 1) - budget.factor(step) for step in range(20)) <= 0.0101, "the rate never jumps up"


def test_a_run_still_improving_doubles_its_budget_up_to_the_stated_maximum_and_then_says_so():
    budget, falling = Budget(schedule(max_extension=3)), curve(*[4.0 * 0.9**i for i in range(40)])
    budget.judge(70, falling[:8])
    assert budget.steps == 100 and budget.status is None, "judged only where the decay would begin"
    budget.judge(80, falling[:9])
    assert (budget.steps, budget.extensions, budget.status, budget.factor(150)) == (200, 1, None, 1.0)
    budget.judge(160, falling[:17])
    assert (budget.steps, budget.extensions) == (300, 2), "doubling stops at max_extension x steps"
    budget.judge(240, falling[:25])
    assert budget.status == "still improving" and budget.decay_start == 240 and budget.steps == 300


def test_a_run_that_already_solves_its_task_on_validation_is_not_extended():
    falling = [{**point, "validation_accuracy": 0.96} for point in curve(*[4.0 * 0.9**i for i in range(9)])]
    budget = Budget(schedule(), solved_at=0.95)
    budget.judge(80, falling)
    assert (budget.steps, budget.extensions, budget.status, budget.decay_start) == (100, 0, "still improving", 80)
    budget = Budget(schedule(), solved_at=0.97)
    budget.judge(80, falling)
    assert (budget.steps, budget.extensions) == (200, 1), "below solved_at, a run still improving is extended"


def test_cosine_is_judged_at_its_last_step_and_the_drop_is_measured_over_the_window():
    budget = Budget(schedule(schedule="cosine", max_extension=1))
    budget.judge(80, curve(4.0, 3.0, 2.0, 1.0, 0.5, 0.4, 0.3, 0.2, 0.1))
    assert budget.status is None
    budget.judge(100, curve(4.0, 3.0, 2.0, 1.0, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1))
    assert budget.status == "still improving", "0.2 at step 80 to 0.1 at step 100 is a 50% drop"
    assert loss_drop(curve(2.0, 1.0), window=1000) == pytest.approx(0.5), "a run shorter than the window: from its first point"


def test_a_run_records_its_budget_status_and_its_chance_given_the_context(make_config, tmp_path):
    cfg = make_config("+debug=tiny", "task=induction", "train.steps=40", "train.eval_every=10", "train.plateau_window=10",
                      "train.plateau_drop=0.001", "train.max_extension=2", "train.warmup_steps=5", "train.lr=3e-3")  # fmt: skip
    record = run(cfg, tmp_path, single_run=True, overrides=[])
    assert record["budget"]["status"] in ("still improving", "converged") and record["budget"]["extensions"] == 1
    assert record["steps_run"] == record["budget"]["steps"] == 80
    assert 1 / 31 < record["chance_given_context"] < 1 and record["chance_given_context"] > record["chance_accuracy"]


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
    assert (tmp_path / "model.safetensors").exists() and saved["analyses"]["head_scores"] == "completed"
    assert saved["analyses"]["length_generalisation"] == "not_applicable", "fixed copy's answer offset is tied to its length"
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


def test_subnormal_results_are_flushed_to_zero_in_torchs_worker_threads_too():
    """bench/core/arithmetic.py: set when the configuration module is imported, before torch starts its
    worker threads, so that every thread that splits a large operation flushes (an operation on a
    subnormal costs many times a normal one on this project's CPUs). In a fresh process of two threads,
    as a command starts: this test process may run one thread (pytest-xdist's workers)."""
    check = ("import bench.core.config, torch; torch.set_num_threads(2); "
             "halves = torch.full((1 << 22,), torch.finfo(torch.float32).tiny) / 2; print(int((halves != 0).sum()))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "0", f"{done.stdout.strip()} of 4,194,304 subnormal results were not flushed"
