"""Attention variants, one per file. Importing this package registers every variant in it."""
from plugin import import_plugins
from variants.base import VARIANTS, AttentionVariant

import_plugins(__name__, __path__)

__all__ = ["VARIANTS", "AttentionVariant"]
