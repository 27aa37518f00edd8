"""Synthetic tasks, one generator per file. Importing this package registers every task in it."""
import importlib
import pkgutil

from tasks.base import IGNORE_INDEX, SPLITS, TASKS, Batch, Task

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["IGNORE_INDEX", "SPLITS", "TASKS", "Batch", "Task"]
