"""Forward + backward of one attention layer for every registered variant: batch 16, 4 heads,
d_head 32 (d_model 128), causal, float32, at each sequence length T; then the triple variant
against standard, both measured in this run.

    python -m pytest benchmarks/test_attention_speed.py                   # timed; asserts the ratios
    ATTENTION_SPEED_LENGTHS=128,256 python -m pytest benchmarks/test_attention_speed.py
    python -m pytest benchmarks --benchmark-disable                       # smoke: shortest T only, once

Time: pytest-benchmark's median over timed rounds (wall clock, torch's default threads), after
warm-up rounds; each T's variants run one after another, so a ratio compares like with like.
Peak memory: bench.speed.peak_allocated_bytes, the highest total of CPU bytes allocated during
one forward + backward above the total before it, replayed from torch's profiler events.
"""
from __future__ import annotations

import os

import pytest
import torch

from bench.speed import peak_allocated_bytes
from variants import VARIANTS

BATCH, N_HEADS, D_HEAD = 16, 4, 32
D_MODEL = N_HEADS * D_HEAD
LENGTHS = [int(t) for t in os.environ.get("ATTENTION_SPEED_LENGTHS", "128,512,1024").split(",")]
MAX_TRIPLE_TIME_RATIO, MAX_TRIPLE_MEMORY_RATIO, MEMORY_RATIO_LENGTH = 2.5, 3.0, 1024
PEAK_BYTES: dict[tuple[str, int], int] = {}


def timing_key(variant: str, length: int) -> tuple[str, str, int]:
    return ("attention forward+backward", variant, length)


@pytest.mark.benchmark(min_rounds=10, max_time=2.0, warmup=True, warmup_iterations=2)  # rounds for about 2 s
@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("length", LENGTHS)  # innermost, so that each T's variants run together
def test_forward_backward(benchmark, medians, variant, length):
    if benchmark.disabled and length != min(LENGTHS):
        pytest.skip("smoke run (--benchmark-disable): only the shortest length runs")
    benchmark.group = f"attention forward+backward T={length}"
    torch.manual_seed(0)
    try:
        layer = VARIANTS[variant](D_MODEL, N_HEADS, max(LENGTHS))
    except ValueError as error:
        pytest.skip(f"{variant} cannot be built at d_model {D_MODEL}, {N_HEADS} heads: {error}")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, length, D_MODEL, generator=generator, requires_grad=True)
    grad_output = torch.randn(BATCH, length, D_MODEL, generator=generator)

    def step() -> None:
        layer(x)[0].backward(grad_output)

    benchmark.extra_info.update(variant=variant, T=length, batch=BATCH, n_heads=N_HEADS, d_head=D_HEAD)
    benchmark(step)
    if benchmark.disabled:
        return
    medians[timing_key(variant, length)] = benchmark.stats.stats.median
    layer.zero_grad(set_to_none=True)
    x.grad = None
    PEAK_BYTES[variant, length] = benchmark.extra_info["peak_memory_bytes"] = peak_allocated_bytes(step)


@pytest.mark.parametrize("length", LENGTHS)
def test_triple_is_within_2_5x_of_standard(medians, length):
    triple, standard = timing_key("triple", length), timing_key("standard", length)
    if triple not in medians or standard not in medians:
        pytest.skip(f"needs triple and standard timed at T={length} in this run (not with --benchmark-disable)")
    ratio = medians[triple] / medians[standard]
    print(f"triple / standard median forward+backward at T={length}: {ratio:.2f}")
    assert ratio <= MAX_TRIPLE_TIME_RATIO


def test_triple_peak_memory_is_within_3x_of_standard():
    length = MEMORY_RATIO_LENGTH
    if ("triple", length) not in PEAK_BYTES or ("standard", length) not in PEAK_BYTES:
        pytest.skip(f"needs triple and standard measured at T={length} in this run (not with --benchmark-disable)")
    ratio = PEAK_BYTES["triple", length] / PEAK_BYTES["standard", length]
    print(f"triple / standard peak memory of forward+backward at T={length}: {ratio:.2f}")
    assert ratio <= MAX_TRIPLE_MEMORY_RATIO
