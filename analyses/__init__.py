"""Analyses of trained runs, one per file. Importing this package registers every analysis in it."""
from analyses.base import ANALYSES, Analysis, Block, Figure, Measurement, SectionData, TrainedRun
from plugin import import_plugins

import_plugins(__name__, __path__)

__all__ = ["ANALYSES", "Analysis", "Block", "Figure", "Measurement", "SectionData", "TrainedRun"]
