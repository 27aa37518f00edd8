"""The speed suite: forward and forward + backward of one attention layer for every registered
variant and a raw-SDPA reference, at a fixed number of tokens per batch, for each T; the
machine's float32 matmul ceiling; one full training step per variant.

    python -m pytest benchmarks/test_speed.py --benchmark-json=reports/speed.json   # full suite
    python -m pytest benchmarks/test_speed.py --speed-lengths=128,512 --speed-device=cuda
    python -m pytest benchmarks --benchmark-disable --speed-lengths=64                 # smoke

The JSON feeds the report's speed section (python -m bench.report <sweep_dir>).
"""
from __future__ import annotations

import time

import pytest
import torch
from hydra import compose, initialize_config_dir

from bench.core.config import CONF_DIR, CONFIG_NAME, build_model, build_task
from bench.speed import (
    N_HEADS, D_MODEL, REFERENCE, attention_layer, batch_size, count_flops, matmul_workload, memory_bytes, synchronize, workload,
)  # fmt: skip
from bench.core.train import make_optimizer, train_step
from variants import VARIANTS

TIME_PER_BENCHMARK = 2.0  # seconds of timed rounds aimed at, within [MIN_ROUNDS, MAX_ROUNDS]
MIN_ROUNDS, MAX_ROUNDS, WARMUP_ROUNDS = 5, 30, 2
MAX_STANDARD_VS_SDPA = 1.15
# dot-product attention with a bias, a mask or normalised queries and keys, in the same fused kernel
FUSED_WITH_A_BIAS_OR_MASK, MAX_FUSED_VS_SDPA = ("alibi", "nope", "qk_norm", "sliding_window"), 1.3
MAX_SIMPLICIAL_VS_STANDARD = 3.0


def timed(benchmark, medians: dict, key: tuple, run, **extra_info) -> None:
    """Time `run` with warm-up rounds; record the median (seconds) under `key`."""
    run()  # first call: allocations, kernel selection
    started = time.perf_counter()
    run()
    rounds = int(min(MAX_ROUNDS, max(MIN_ROUNDS, TIME_PER_BENCHMARK / (time.perf_counter() - started))))
    benchmark.extra_info.update(extra_info)
    benchmark.pedantic(run, rounds=rounds, warmup_rounds=WARMUP_ROUNDS, iterations=1)
    if benchmark.stats is not None:
        medians[key] = benchmark.stats.stats.median


@pytest.mark.benchmark(group="ceiling")
def test_matmul_ceiling(benchmark, medians, device):
    run, flops = matmul_workload(2048, device)
    timed(benchmark, medians, ("matmul",), run, mode="matmul", flops=flops)
    if ("matmul",) in medians:
        medians["ceiling_gflops_per_s"] = benchmark.extra_info["gflops_per_s"] = flops / medians[("matmul",)] / 1e9


@pytest.mark.parametrize("variant", [REFERENCE, *sorted(VARIANTS)])
def test_attention_layer(benchmark, medians, device, variant, seq_len, mode):
    benchmark.group = f"{mode} T={seq_len}"
    try:
        layer = attention_layer(variant, seq_len, device)
    except ValueError as refused:  # a constructed circuit sized by its own limits
        pytest.skip(f"{variant} cannot be built at d_model {D_MODEL}, T={seq_len}: {refused}")
    flops, flops_source = count_flops(layer, seq_len, mode, device)
    batch = batch_size(seq_len)
    info = dict(variant=variant, mode=mode, T=seq_len, batch=batch, d_head=D_MODEL // N_HEADS, flops=flops, flops_source=flops_source,
                peak_memory_bytes=memory_bytes(layer, seq_len, mode, device), device=str(device))  # fmt: skip
    timed(benchmark, medians, (variant, mode, seq_len), workload(layer, seq_len, mode, device), **info)
    median = medians.get((variant, mode, seq_len))
    if median:
        benchmark.extra_info.update(tokens_per_s=batch * seq_len / median, gflops_per_s=flops / median / 1e9)
        if (REFERENCE, mode, seq_len) in medians:
            benchmark.extra_info["vs_sdpa"] = median / medians[(REFERENCE, mode, seq_len)]
        if "ceiling_gflops_per_s" in medians:
            benchmark.extra_info["of_ceiling"] = benchmark.extra_info["gflops_per_s"] / medians["ceiling_gflops_per_s"]


@pytest.mark.benchmark(group="train step")
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_training_step(benchmark, medians, device, variant):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(CONFIG_NAME, overrides=[f"variant={variant}", "task=induction", f"device={device}", *VARIANTS[variant].required_config])
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    optimizer, scheduler = make_optimizer(model, cfg.train)
    batch = build_task(cfg).sample(cfg.train.batch_size, torch.Generator().manual_seed(0)).to(device)

    def step() -> None:
        train_step(model, optimizer, scheduler, batch.inputs, batch.targets, cfg.train.grad_clip)
        synchronize(device)

    timed(benchmark, medians, (variant, "train_step"), step, variant=variant, mode="train_step",
          T=cfg.task.seq_len, batch=cfg.train.batch_size)  # fmt: skip
    if (variant, "train_step") in medians:
        benchmark.extra_info["tokens_per_s"] = cfg.train.batch_size * cfg.task.seq_len / medians[(variant, "train_step")]


def forward_backward_ratio(medians: dict, variant: str, reference: str, seq_len: int) -> float:
    """variant's median forward + backward time over reference's, both timed in this run at seq_len."""
    keys = [(variant, "forward_backward", seq_len), (reference, "forward_backward", seq_len)]
    if not all(key in medians for key in keys):
        pytest.skip(f"needs {variant} and {reference} timed at T={seq_len} in this run")
    ratio = medians[keys[0]] / medians[keys[1]]
    print(f"{variant} / {reference} forward+backward at T={seq_len}: {ratio:.3f}")
    return ratio


@pytest.mark.parametrize("seq_len_target", [512, 2048])
def test_standard_is_within_115_percent_of_raw_sdpa(medians, seq_len_target):
    assert forward_backward_ratio(medians, "standard", REFERENCE, seq_len_target) <= MAX_STANDARD_VS_SDPA


@pytest.mark.parametrize("variant", FUSED_WITH_A_BIAS_OR_MASK)
def test_fused_variants_are_within_130_percent_of_raw_sdpa_at_2048(medians, variant):
    assert forward_backward_ratio(medians, variant, REFERENCE, 2048) <= MAX_FUSED_VS_SDPA


def test_simplicial_is_within_3x_of_standard_at_2048(medians):
    # at its default windows; at T = 512 a query's w1 w2 pairs are as many as causal attention's T / 2 keys
    assert forward_backward_ratio(medians, "simplicial", "standard", 2048) <= MAX_SIMPLICIAL_VS_STANDARD
