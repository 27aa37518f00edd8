"""Analyses of trained runs, one per file. Importing this package registers every analysis in it."""
import importlib
import pkgutil

from analyses.base import ANALYSES, Analysis, Block, Figure, Measurement, SectionData, TrainedRun

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["ANALYSES", "Analysis", "Block", "Figure", "Measurement", "SectionData", "TrainedRun"]
