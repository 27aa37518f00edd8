"""Framework overhead: one training step through bench.train.train_step against a bare PyTorch
loop (forward, cross-entropy, backward, AdamW step) on the same model and batch.

    python -m pytest benchmarks/test_overhead.py          # timed; asserts the ratio <= 1.2
    python -m pytest benchmarks --benchmark-disable       # smoke: each step runs once, untimed
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from bench.core.config import build_model, build_task, compose_config
from bench.core.train import make_optimizer, train_step
from bench.speed import paired_medians
from tasks import IGNORE_INDEX

MAX_OVERHEAD = 1.2


@pytest.fixture(scope="module")
def setup():
    cfg = compose_config(["task=induction"])
    torch.manual_seed(0)
    batch = build_task(cfg).sample(cfg.train.batch_size, torch.Generator().manual_seed(0))
    return cfg, batch.inputs, batch.targets


def bare_step(cfg, inputs, targets):
    """forward, cross-entropy, backward and an AdamW step, with nothing of the framework."""
    torch.manual_seed(0)
    model = build_model(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)

    def step() -> float:
        loss = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def framework_step(cfg, inputs, targets):
    torch.manual_seed(0)
    model = build_model(cfg)
    optimizer, scheduler = make_optimizer(model, cfg.train)
    return lambda: train_step(model, optimizer, scheduler, inputs, targets, cfg.train.grad_clip).loss


@pytest.mark.benchmark(group="train-step")
@pytest.mark.parametrize("make_step", [bare_step, framework_step], ids=["bare", "framework"])
def test_training_step(benchmark, setup, make_step):
    step = make_step(*setup)
    first = step()
    benchmark.pedantic(step, rounds=60, warmup_rounds=5)
    assert math.isfinite(first) and step() < first, "the timed step trains: the loss falls"


def test_framework_step_is_within_1_2x_of_a_bare_step(setup, ratio_length):  # timed only when ratios are asked for
    framework, bare = paired_medians(framework_step(*setup), bare_step(*setup), rounds=30)
    print(f"framework / bare median step time: {framework / bare:.3f}")
    assert framework / bare <= MAX_OVERHEAD
