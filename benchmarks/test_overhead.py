"""Framework overhead: one training step through bench.train.train_step against a bare PyTorch
loop (forward, cross-entropy, backward, AdamW step) on the same model and batch.

    python -m pytest benchmarks/test_overhead.py          # timed; asserts the ratio <= 1.2
    python -m pytest benchmarks --benchmark-disable       # smoke: each step runs once, untimed
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from bench.core.config import CONF_DIR, CONFIG_NAME, build_model, build_task
from bench.core.train import make_optimizer, train_step
from tasks import IGNORE_INDEX

MAX_OVERHEAD = 1.2


@pytest.fixture(scope="module")
def setup():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(CONFIG_NAME, overrides=["task=induction"])
    torch.manual_seed(0)
    batch = build_task(cfg).sample(cfg.train.batch_size, torch.Generator().manual_seed(0))
    return cfg, batch.inputs, batch.targets


def measure(benchmark, medians, name, step):
    step()  # warm-up outside the timed rounds
    benchmark.pedantic(step, rounds=60, warmup_rounds=5)
    if benchmark.stats is not None:
        medians[name] = benchmark.stats.stats.median


@pytest.mark.benchmark(group="train-step")
def test_bare_pytorch_step(benchmark, medians, setup):
    cfg, inputs, targets = setup
    torch.manual_seed(0)
    model = build_model(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)

    def step():
        loss = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    measure(benchmark, medians, "bare", step)


@pytest.mark.benchmark(group="train-step")
def test_framework_step(benchmark, medians, setup):
    cfg, inputs, targets = setup
    torch.manual_seed(0)
    model = build_model(cfg)
    optimizer, scheduler = make_optimizer(model, cfg.train)
    measure(benchmark, medians, "framework", lambda: train_step(model, optimizer, scheduler, inputs, targets, cfg.train.grad_clip))


def test_framework_overhead_ratio(medians):
    if not {"bare", "framework"} <= medians.keys():
        pytest.skip("needs both timed benchmarks of this module in the same run (not with --benchmark-disable)")
    ratio = medians["framework"] / medians["bare"]
    print(f"framework / bare median step time: {ratio:.3f}")
    assert ratio <= MAX_OVERHEAD
