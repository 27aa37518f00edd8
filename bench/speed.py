"""What the speed suite measures: one attention layer at a fixed number of tokens per batch,
its FLOPs and its memory, for every registered variant and a raw-SDPA reference.

    FLOPs    the FlashAttention convention for causal attention: the attention core's forward
             FLOPs with the masked half left out (4 B H T^2 d / 2 for dot-product attention),
             forward + backward = 3.5 x forward; plus the projections (forward + backward = 3 x
             forward). The core comes from the variant's own formula (``attention_flops``) where
             it has one (the projections then counted on its training path), otherwise from
             torch.utils.flop_counter on its explicit path (need_weights=True) with every
             batched product (bmm: attention's, not the projections' mm) that has a T x T
             operand or result halved
    memory   the peak of bytes allocated during one run above the level before it: on CUDA the
             allocator's own peak; on CPU, which keeps none, replayed from the allocation and free
             events of torch's profiler (activations, what autograd keeps for backward,
             temporaries, gradients; not memory that libraries such as MKL allocate themselves)
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from bench.core.config import build_model, build_task
from bench.core.train import StepResult, make_optimizer, train_step
from plugin.compat import cpu_memory_events
from variants import VARIANTS
from variants.base import AttentionVariant
from variants.dot_product import DotProductAttention

D_MODEL, N_HEADS = 128, 4  # d_head 32
TOKENS_PER_BATCH = 16384
REFERENCE = "sdpa (reference)"
MODES = ("forward", "forward_backward")


class RawSDPA(DotProductAttention):
    """The practical ceiling for standard attention: the same projections around torch's fused
    kernel, without RoPE. Not registered (no `name`): a reference, not a variant."""


def attention_layer(name: str, max_seq_len: int, device: torch.device) -> AttentionVariant:
    torch.manual_seed(0)
    layer = RawSDPA if name == REFERENCE else VARIANTS[name]
    return layer(D_MODEL, N_HEADS, max_seq_len).to(device)


def batch_size(seq_len: int) -> int:
    return max(1, TOKENS_PER_BATCH // seq_len)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def workload(layer: AttentionVariant, seq_len: int, mode: str, device: torch.device, need_weights: bool = False) -> Callable[[], None]:
    """A function that runs the layer once (and its backward for forward_backward), synchronised."""
    x = torch.randn(batch_size(seq_len), seq_len, D_MODEL, device=device, requires_grad=mode == "forward_backward")

    def forward() -> None:
        with torch.no_grad():
            layer(x, need_weights)
        synchronize(device)

    def forward_backward() -> None:
        layer(x, need_weights)[0].sum().backward()
        synchronize(device)

    return forward if mode == "forward" else forward_backward


BATCHED_PRODUCTS = (torch.ops.aten.bmm, torch.ops.aten.baddbmm)


def causal_formula(formula: Callable, seq_len: int) -> Callable:
    """A flop_counter formula that counts half of a product with a (T, T) operand or result: the
    masked half of causal attention, which a kernel that skips it never computes."""
    def count(*args, out_val=None, **kwargs) -> int:
        flops = formula(*args, out_val=out_val, **kwargs)
        tensors = [t for t in (*args, out_val) if isinstance(t, Tensor) and t.dim() >= 2]
        return flops // 2 if any(tuple(t.shape[-2:]) == (seq_len, seq_len) for t in tensors) else flops

    count._get_raw = True  # receives tensors, as the formula it wraps does
    return count


def count_flops(layer: AttentionVariant, seq_len: int, mode: str, device: torch.device) -> tuple[int, str]:
    """(FLOPs of one run in the convention of this module's docstring, where the core's come from)."""
    formula = layer.attention_flops(batch_size(seq_len), seq_len)
    # the explicit path only where the counter counts the core on it (the weights can cost more than the formula's products)
    run = workload(layer, seq_len, "forward", device, need_weights=formula is None)
    mapping = {op: causal_formula(flop_registry[op], seq_len) for op in BATCHED_PRODUCTS}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        run()
    counts = counter.get_flop_counts()
    root = type(layer).__name__
    projections = sum(sum(counts.get(f"{root}.{name}", {}).values()) for name, module in layer.named_modules() if isinstance(module, nn.Linear))
    core, source = (formula, "formula") if formula is not None else (counter.get_total_flops() - projections, "counter, causal half")
    if mode == "forward_backward":
        return round(3 * projections + 3.5 * core), source
    return projections + core, source


def peak_allocated_bytes(run: Callable[[], None]) -> int:
    """The peak, above the level at the start, of CPU bytes allocated while `run` runs."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        run()
    level = peak = 0
    for change in cpu_memory_events(profiler):  # in the order they happened; negative for a free
        level += change
        peak = max(peak, level)
    return peak


def memory_bytes(layer: AttentionVariant, seq_len: int, mode: str, device: torch.device) -> int:
    """Peak bytes allocated during one run of the layer, above the level before it."""
    run = workload(layer, seq_len, mode, device)
    if device.type == "cuda":
        synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run()
        peak = torch.cuda.max_memory_allocated(device) - start
    else:
        peak = peak_allocated_bytes(run)
    layer.zero_grad(set_to_none=True)
    return peak


def training_step(cfg: DictConfig, device: torch.device, compiled: bool = False) -> tuple[nn.Module, Callable[[], StepResult]]:
    """The model of cfg (seed 0) and a function that takes one training step of it on one fixed batch,
    synchronised; the step's forward compiled with torch.compile if asked, as train.compile does."""
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    optimizer, scheduler = make_optimizer(model, cfg.train)
    batch = build_task(cfg).sample(cfg.train.batch_size, torch.Generator().manual_seed(0)).to(device)
    step_model = torch.compile(model) if compiled else model

    def step() -> StepResult:
        result = train_step(step_model, optimizer, scheduler, batch.inputs, batch.targets, cfg.train.grad_clip)
        synchronize(device)
        return result

    return model, step


def matmul_workload(size: int, device: torch.device) -> tuple[Callable[[], None], int]:
    """A large float32 matmul, the machine's practical ceiling, and its FLOPs (2 n^3)."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)

    def run() -> None:
        torch.mm(a, b)
        synchronize(device)

    return run, 2 * size**3


def paired_medians(*runs: Callable[[], None], rounds: int) -> tuple[float, ...]:
    """Median seconds of each workload, all timed in alternation after one warm-up call of each: load
    that comes and goes on a shared machine falls on all alike, so their ratios stay fair."""
    for run in runs:
        run()
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(rounds):
        for run, samples in zip(runs, times):
            started = time.perf_counter()
            run()
            samples.append(time.perf_counter() - started)
    return tuple(statistics.median(samples) for samples in times)
