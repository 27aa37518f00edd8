"""train.compile: every trainable variant's default job, its training step eager and compiled with
torch.compile, compile time counted, end to end at the default budget. The option would be adopted
as a variant's default where it wins by more than 10% for a job that compiles from nothing (an empty
inductor cache: one job, on a new machine); on this project's CPU no variant does, so the check is
that none wins by more than that (with the speed suite's room for a shared machine). It also prints
the gain with a warm cache, as a sweep's later jobs of the same shapes see it.

    python -m pytest benchmarks/test_compile.py -m slow -s      # about 5 minutes on 2 cores
"""
from __future__ import annotations

import statistics
import time

import pytest
import torch
from bench.core.config import compose_config
from bench.speed import training_step
from variants import VARIANTS, AttentionVariant

ADOPT_ABOVE = 1.1  # end-to-end gain over eager at which compile would become the default
TOLERANCE = 1.1  # as the speed suite's ratio claims
TIMED_STEPS = 30


def step_seconds(name: str, compiled: bool) -> tuple[float, float, int]:
    """(seconds of the first two steps, which include compiling; median seconds of a later step; the default budget)."""
    cfg = compose_config([f"variant={name}"])
    torch._dynamo.reset()  # a new job's process: nothing compiled in memory (the on-disk cache is the caller's)
    _, step = training_step(cfg, torch.device("cpu"), compiled)

    def seconds() -> float:
        started = time.perf_counter()
        result = step()
        assert result.loss == result.loss, "the step trained to a finite loss"
        return time.perf_counter() - started

    first = seconds() + seconds()
    return first, statistics.median(seconds() for _ in range(TIMED_STEPS)), cfg.train.steps


# the constructed circuits set their weights and leave them: they have no training step to compile
TRAINABLE = sorted(name for name, variant in VARIANTS.items() if variant.trainable is AttentionVariant.trainable)


@pytest.mark.slow
@pytest.mark.parametrize("variant", TRAINABLE)
def test_compiling_the_training_step_does_not_win_end_to_end(variant, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))  # empty: this job compiles from nothing
    _, eager, steps = step_seconds(variant, compiled=False)
    cold_seconds, compiled, _ = step_seconds(variant, compiled=True)
    warm_seconds, _, _ = step_seconds(variant, compiled=True)
    cold, warm = (steps * eager / (seconds + steps * compiled) for seconds in (cold_seconds, warm_seconds))
    print(f"{variant}: eager {eager * 1e3:.2f} ms/step, compiled {compiled * 1e3:.2f} ms/step after {cold_seconds:.1f} s "
          f"({warm_seconds:.1f} s from a warm cache); end to end at {steps} steps: {cold:.2f}x ({warm:.2f}x warm)")  # fmt: skip
    assert cold <= ADOPT_ABOVE * TOLERANCE, f"train.compile wins {cold:.2f}x for {variant}'s job: make it its default"
