"""Training, evaluation and the result record of one job."""
from __future__ import annotations

import json
import math
from importlib import metadata

import pytest
import torch
from torch import nn

from bench.app import run
from bench.config import build_task
from bench.train import Evaluation, evaluate, learning_rate_factor, scored_loss, train
from tasks import IGNORE_INDEX


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


class Oracle(nn.Module):
    """Predicts the next input token: perfect on every next-token task."""

    def __init__(self, vocab_size: int, wrong_rows: int = 0) -> None:
        super().__init__()
        self.vocab_size, self.wrong_rows = vocab_size, wrong_rows

    def forward(self, tokens):
        following = torch.roll(tokens, -1, dims=1)
        following[: self.wrong_rows] = (following[: self.wrong_rows] + 1) % self.vocab_size
        return nn.functional.one_hot(following, self.vocab_size).float() * 50


def test_evaluation_of_a_perfect_and_a_partly_wrong_model(make_config):
    task = build_task(make_config("task=copy"))
    batches = [task.sample(8, torch.Generator().manual_seed(0))]
    assert evaluate(Oracle(task.vocab_size), batches) == Evaluation(loss=pytest.approx(0, abs=1e-6), accuracy=1.0, exact_match=1.0)
    half_wrong = evaluate(Oracle(task.vocab_size, wrong_rows=4), batches)
    assert half_wrong.accuracy == 0.5 and half_wrong.exact_match == 0.5


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


def test_a_job_writes_a_complete_result_and_stops_early_at_the_target(make_config, tiny, tmp_path):
    cfg = make_config(*tiny, "model.n_layers=1", "train.steps=400", "train.eval_every=25", "task.seq_len=16")
    record = run(cfg, tmp_path, single_run=False, overrides=["task.seq_len=16"])
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved == json.loads(json.dumps(record, default=str))
    assert saved["status"] == "completed" and saved["metrics"]["accuracy"] >= 0.99
    assert saved["steps_to_target"] is not None and saved["steps_run"] == saved["steps_to_target"] + 25
    assert saved["steps_run"] < 400, "early stop once the target held for target_hold evaluations"
    assert [p["step"] for p in saved["curve"]][:3] == [0, 25, 50]
    assert saved["config"]["model"]["n_layers"] == 1 and saved["overrides"] == ["task.seq_len=16"]
    assert saved["n_params"] == sum(p.numel() for p in nn.Linear(32, 4 * 32, bias=False).parameters()) + 2 * 16 * 32
    assert saved["train_tokens_per_s"] > 0 and saved["wall_time_s"] > 0
    assert saved["environment"]["versions"]["torch"] == metadata.version("torch")
    assert len(saved["config_hash"]) == 16 and not list(tmp_path.glob(".*.tmp"))


def test_same_seed_gives_identical_results_on_cpu(make_config, tiny, tmp_path):
    cfg = make_config(*tiny, "task=induction", "train.steps=30", "train.eval_every=10")
    first = run(cfg, tmp_path / "a", single_run=False, overrides=[])
    second = run(cfg, tmp_path / "b", single_run=False, overrides=[])
    assert first["curve"] == second["curve"] and first["metrics"] == second["metrics"]
    other_seed = run(make_config(*tiny, "task=induction", "train.steps=30", "train.eval_every=10", "seed=1"), tmp_path / "c", single_run=False, overrides=[])
    assert other_seed["curve"] != first["curve"]


def test_a_failing_job_is_recorded_and_a_single_run_re_raises(make_config, tiny, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr("bench.app.train", broken)
    cfg = make_config(*tiny, "train.steps=5")
    record = run(cfg, tmp_path / "sweep_job", single_run=False, overrides=[])
    assert record["status"] == "failed" and record["error"] == "RuntimeError: out of memory (simulated)"
    assert "Traceback" in record["traceback"]
    with pytest.raises(RuntimeError):
        run(cfg, tmp_path / "single", single_run=True, overrides=[])
    assert json.loads((tmp_path / "single" / "result.json").read_text())["status"] == "failed"
