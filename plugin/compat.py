"""Every use of a private API of Hydra or PyTorch, in one place, each with the reason no public API
does the job. ``tests/test_compat.py`` checks each one against the public behaviour it stands in
for, so that an upgrade that moves or changes one fails there, loudly, and not in a sweep.

Imports happen inside each function: importing this module costs nothing.
"""
from __future__ import annotations

import argparse
from typing import Any

# The `hydra.sweeper._target_` of Hydra's default sweeper. Why private: Hydra names its basic sweeper
# in the config by this path inside hydra._internal; only that sweeper's jobs can be listed before it
# runs (any other sweeper, Optuna's say, picks its jobs as it goes).
BASIC_SWEEPER_TARGET = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def cpu_causal_attention_with_mask(q: Any, k: Any, v: Any, mask: Any, scale: float | None) -> Any:
    """softmax(scale q k^T + mask) v over the keys j <= i, by torch's CPU flash kernel told both the
    mask and causality.

    Why private: the public ``scaled_dot_product_attention`` refuses ``attn_mask`` together with
    ``is_causal``; given the mask alone it visits every key block above the diagonal as well, about
    twice the work of causal attention. The kernel behind it takes both and skips those blocks. It
    gives the mask no gradient, so callers use it only for a mask that needs none."""
    import torch

    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, is_causal=True, attn_mask=mask, scale=scale)[0]


def hydra_argument_parser() -> argparse.ArgumentParser:
    """The parser that ``@hydra.main`` applies to the command line (-m, --cfg, overrides, ...).

    Why private: the command line is checked job by job before Hydra starts, and must be read exactly
    as Hydra will read it; Hydra exposes its parser only in ``hydra._internal.utils``."""
    from hydra._internal.utils import get_args_parser

    return get_args_parser()


def forget_stored_config(group: str, name: str) -> None:
    """Remove ``<group>/<name>`` from Hydra's ConfigStore.

    Why private: the ConfigStore can add a config but has no call to remove one; a plug-in taken
    out of its registry must stop being a choice, or a later sweep's glob expands to it."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().repo.get(group, {}).pop(f"{name}.yaml", None)


def cpu_memory_events(profiler: Any) -> list[int]:
    """The CPU allocation (+) and free (-) sizes in bytes that a finished ``torch.profiler.profile``
    (profile_memory=True) recorded, in the order they happened.

    Why private: the public profiler API sums memory per operator (``key_averages``), which loses
    the order of allocations and frees, and with it the peak; the ordered events are only in the
    profiler's kineto results."""
    import torch

    return [
        event.nbytes()
        for event in profiler.profiler.kineto_results.events()
        if event.name() == "[memory]" and event.device_type() == torch.autograd.DeviceType.CPU
    ]


def peak_live_bytes(run: Any) -> int:
    """The peak of the bytes held by the tensors that `run` creates and that are still alive, as
    torch's dispatcher hands them out: on the meta device, what a run would need, without
    allocating it.

    Why private: the dispatcher's Python hook, ``TorchDispatchMode``, lives in
    ``torch.utils._python_dispatch``; the public profiler records real allocations only, and the
    meta device allocates none."""
    import weakref

    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    live: dict[int, int] = {}  # id of each live storage -> its bytes
    peak = [0]

    class PeakLive(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            for tensor in tree_leaves(out):
                storage = getattr(tensor, "untyped_storage", None)
                if storage is None or id(storage()) in live:
                    continue
                storage = storage()
                live[id(storage)] = storage.nbytes()
                weakref.finalize(storage, live.pop, id(storage), 0)
                peak[0] = max(peak[0], sum(live.values()))
            return out

    with PeakLive():
        run()
    return peak[0]
