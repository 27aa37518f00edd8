"""Synthetic tasks, one generator per file. Importing this package registers every task in it."""
from plugin import import_plugins
from tasks.base import IGNORE_INDEX, SPLITS, TASKS, Batch, Task

import_plugins(__name__, __path__)

__all__ = ["IGNORE_INDEX", "SPLITS", "TASKS", "Batch", "Task"]
