"""Attention variants, one per file. Importing this package registers every variant in it."""
import importlib
import pkgutil

from variants.base import VARIANTS, AttentionVariant

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["VARIANTS", "AttentionVariant"]
