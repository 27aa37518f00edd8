"""The README stays true: its worked variant example registers, selects and passes the contract."""
from __future__ import annotations

import re
import types
from pathlib import Path

import pytest
import test_variants as contract

from bench.cli import check_command_line
from bench.core.config import register_configs
from variants import VARIANTS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def block_after(marker: str) -> str:
    return re.search(rf"<!-- {marker} -->\n```\w+\n(.*?)```", README, re.DOTALL).group(1)


@pytest.fixture
def example_variant():
    """The README's variant, registered for the test alone: a user's own file of the same name (made
    by following the README) steps aside while it runs and comes back after."""
    source = block_after("variant-example")
    name = re.search(r'name = "(\w+)"', source).group(1)
    saved = dict(VARIANTS)
    VARIANTS.pop(name, None)
    module = types.ModuleType(f"variants.readme_{name}")
    exec(compile(source, "README.md", "exec"), module.__dict__)
    register_configs()
    yield name
    VARIANTS.clear()
    VARIANTS.update(saved)
    register_configs()


def test_the_example_is_at_most_30_lines():
    assert len(block_after("variant-example").strip().splitlines()) <= 30


@pytest.mark.parametrize(
    "check",
    [
        contract.test_output_shape_and_weights_shape,
        contract.test_training_path_equals_weights_path,
        contract.test_causal,
        contract.test_attention_rows_sum_to_one,
        contract.test_gradients_reach_every_parameter,
        contract.test_same_seed_same_output,
    ],
)
def test_the_example_passes_the_variant_contract(example_variant, check):
    check(example_variant)


def test_the_example_is_selected_by_name_with_its_option(example_variant):
    assert check_command_line([f"variant={example_variant}", "variant.max_slope=0.5"], multirun=False) == 1


def test_ci_runs_the_readme_test_command():
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "test-command" in ci and "python -m pytest" in block_after("test-command")
