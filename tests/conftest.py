from __future__ import annotations

import inspect
import subprocess
from pathlib import Path

import pytest
from omegaconf import DictConfig

from bench.core.config import compose_config, register_configs
from variants import VARIANTS

# A command registers the configs when it starts; the tests compose them directly, so register once here.
register_configs()

REPO = Path(__file__).resolve().parent.parent


def shipped_variants() -> set[str]:
    """The variants this repository ships (their files tracked by git): the ones whose count the
    experiments state and that have a naive reference. A user's own variant file, made by following
    the README, joins every contract and sweep but not these counts."""
    listed = subprocess.run(["git", "ls-files", "variants"], cwd=REPO, capture_output=True, text=True)
    if listed.returncode != 0:  # not a git checkout: every registered variant counts as shipped
        return set(VARIANTS)
    tracked = {(REPO / path).resolve() for path in listed.stdout.split()}
    return {name for name, cls in VARIANTS.items() if Path(inspect.getfile(cls)).resolve() in tracked}


# The shared tiny configuration (conf/debug/tiny.yaml), as a user would add it on the command line.
TINY = ("+debug=tiny",)


@pytest.fixture
def make_config():
    """Compose the project's config with overrides, as `python -m bench <overrides>` would."""

    def make(*overrides: str) -> DictConfig:
        return compose_config(overrides)

    return make


@pytest.fixture
def tiny() -> tuple[str, ...]:
    """Overrides for a small, quick model and training run."""
    return TINY
