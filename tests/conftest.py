from __future__ import annotations

import os

import pytest
import torch
from omegaconf import DictConfig

from bench.core.config import compose_config, register_configs


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread in each of several pytest-xdist workers (addopts' -n auto): on 2 cores, two
    workers of two threads each ran the default tests in 236 s, one thread each in 105 to 115 s, and one
    process of two threads in 205 s."""
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
        torch.set_num_threads(1)


# A command registers the configs when it starts; the tests compose them directly, so register once here.
register_configs()

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
