"""The README stays true: its worked variant example registers, selects and passes the contract; its
analysis example runs on the hand-coded circuit and finds the copying head."""
from __future__ import annotations

import importlib.util
import json
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import bench.contract.test_variants as contract
from analyses import ANALYSES
from bench.cli import check_command_line
from bench.core.config import register_configs
from bench.core.job import run
from bench.core.measure import ANALYSIS_DIR
from variants import VARIANTS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def block_after(marker: str) -> str:
    return re.search(rf"<!-- {marker} -->\n```\w+\n(.*?)```", README, re.DOTALL).group(1)


@contextmanager
def registered_alone(marker: str, registry: dict) -> Iterator[str]:
    """The README's example under `marker`, registered for the test alone: a user's own file of the
    same name (made by following the README) steps aside while it runs and comes back after."""
    source = block_after(marker)
    name = re.search(r'name = "(\w+)"', source).group(1)
    saved = dict(registry)
    registry.pop(name, None)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"readme_{name}.py"  # a real file, as the user's: jobs hash its source
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        sys.modules[path.stem] = module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
            register_configs()
            yield name
        finally:
            del sys.modules[path.stem]
            registry.clear()
            registry.update(saved)
            register_configs()


@pytest.fixture
def example_variant():
    with registered_alone("variant-example", VARIANTS) as name:
        yield name


@pytest.mark.parametrize("marker", ["variant-example", "analysis-example"])
def test_each_example_is_at_most_30_lines(marker):
    assert len(block_after(marker).strip().splitlines()) <= 30


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


@pytest.mark.parametrize("seq_len", contract.LENGTHS)
def test_the_example_matches_the_reference_it_inherits(example_variant, seq_len):
    """A score-bias variant writes no reference: DotProductAttention's naive one applies its bias."""
    contract.test_training_path_matches_the_naive_reference(example_variant, seq_len)


def test_the_example_is_selected_by_name_with_its_option(example_variant):
    option = re.search(r"\*, (\w+):", block_after("variant-example")).group(1)
    assert check_command_line([f"variant={example_variant}", f"variant.{option}=0.5"], multirun=False) == 1


@pytest.mark.slow  # 3 to 4 s: keeps the default suite under 3 minutes; CI runs it with -m slow
def test_the_analysis_example_finds_the_copying_head_of_the_hand_coded_circuit(make_config, tmp_path):
    with registered_alone("analysis-example", ANALYSES) as name:
        cfg = make_config("variant=handcoded_induction", "task=induction")
        record = run(cfg, tmp_path, single_run=False, overrides=[])
        output = json.loads((tmp_path / ANALYSIS_DIR / f"{name}.json").read_text())
    assert record["status"] == "completed" and output["status"] == "completed"
    scores = {row["head"]: row["score"] for row in output["rows"]}
    assert scores["L1H0"] > 0.9  # the induction head copies the token it attends to
    # no other head writes where the unembedding reads: M_h = 0, a score of 0/0, stored as null
    assert all(score is None for head, score in scores.items() if head != "L1H0")


def test_ci_runs_the_readme_test_command():
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "test-command" in ci and "python -m pytest" in block_after("test-command")


def test_ci_times_the_readme_speed_ratios_and_checks_the_wheel():
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    stated = re.search(r"forward \+ backward at T = (\d+)", README).group(1)
    assert f"--speed-ratio-length={stated}" in ci and "\n.ci/check-wheel" in ci
