from __future__ import annotations

import pytest
from omegaconf import DictConfig

from bench.core.config import compose_config, register_configs

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
