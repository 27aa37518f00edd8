from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from bench.core.config import CONF_DIR, CONFIG_NAME

# The shared tiny configuration (conf/debug/tiny.yaml), as a user would add it on the command line.
TINY = ("+debug=tiny",)


@pytest.fixture
def make_config():
    """Compose the project's config with overrides, as `python -m bench <overrides>` would."""

    def make(*overrides: str) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(CONFIG_NAME, overrides=list(overrides))

    return make


@pytest.fixture
def tiny() -> tuple[str, ...]:
    """Overrides for a small, quick model and training run."""
    return TINY
