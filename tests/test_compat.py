"""The private APIs the project needs, all in plugin/compat.py, each against the public behaviour it
stands in for: an upgrade of Hydra or PyTorch that moves or changes one fails here, by name."""
from __future__ import annotations

import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from torch.profiler import ProfilerActivity, profile

from bench import CONF_DIR, CONFIG_NAME
from plugin.compat import (
    BASIC_SWEEPER_TARGET,
    cpu_causal_attention_with_mask,
    cpu_memory_events,
    forget_stored_config,
    hydra_argument_parser,
)

REPO = Path(__file__).resolve().parent.parent
# What counts as a private API: Hydra's _internal package, torch's private aten operators and
# profiler results, and the ConfigStore's repository.
PRIVATE = re.compile(r"hydra\._internal|torch\.ops\.aten\._|kineto_results|ConfigStore\.instance\(\)\.repo|store\.repo")


def test_cpu_causal_attention_with_a_mask_equals_the_public_kernel_given_the_causal_mask():
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 37, 8, generator=generator) for _ in range(3))
    bias = torch.randn(3, 37, 37, generator=generator)
    causal = torch.ones(37, 37, dtype=torch.bool).tril()
    mask = bias.masked_fill(~causal, -math.inf)[None]
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3)
    torch.testing.assert_close(cpu_causal_attention_with_mask(q, k, v, mask, 0.3), expected)


def test_the_argument_parser_reads_the_command_line_as_hydra_does():
    args = hydra_argument_parser().parse_args(["-m", "variant=triple", "seed=0,1", "--cfg", "job"])
    assert args.multirun and args.overrides == ["variant=triple", "seed=0,1"] and args.cfg == "job" and not args.help


def test_a_stored_config_can_be_forgotten():
    store = ConfigStore.instance()
    store.store(group="compat_test", name="gone", node={"x": 1})
    assert "gone.yaml" in store.list("compat_test")
    forget_stored_config("compat_test", "gone")
    assert "gone.yaml" not in store.list("compat_test")


def test_memory_events_replay_an_allocation_and_its_free_in_order():
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        block = torch.empty(1 << 20, dtype=torch.uint8)
        del block
    events = cpu_memory_events(profiler)
    assert (1 << 20) in events and -(1 << 20) in events and events.index(1 << 20) < events.index(-(1 << 20))


def test_the_basic_sweeper_is_hydras_default(make_config):
    make_config()  # registers the project's configs
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        # the project's default is its tuning sweeper; Hydra's own, asked for by name, is the basic one
        assert compose(CONFIG_NAME, overrides=["hydra/sweeper=basic"], return_hydra_config=True).hydra.sweeper._target_ == BASIC_SWEEPER_TARGET


def test_no_private_api_is_used_outside_the_compatibility_module():
    sources = [p for folder in ("bench", "variants", "tasks", "analyses", "plugin", "hydra_plugins", "benchmarks") for p in (REPO / folder).rglob("*.py")]
    offenders = [f"{path.relative_to(REPO)}:{number}" for path in sources if path.name != "compat.py"
                 for number, line in enumerate(path.read_text().splitlines(), 1) if PRIVATE.search(line)]  # fmt: skip
    assert not offenders, f"private APIs outside plugin/compat.py: {offenders}"
