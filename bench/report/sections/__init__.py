"""Report sections, the fourth plug-in kind: one file each, registered by subclassing
``ReportSection``, shown in ``order``. Importing this package registers every section in it.

    class Parameters(ReportSection):
        name = "parameters"
        title = "Parameters"
        order = 45

        def blocks(self, data: ReportData) -> list[Block]:
            table = data.selection.selected.groupby("setting")["n_params"].first().reset_index()
            return ["Parameters per setting.", table]

A section gets the same ``ReportData`` as every other (the runs, the selection of
bench.report.protocol, the figure directory) and returns blocks: text, tables, figures and lists of
sentences, exactly as an analysis's ``section`` does. A section with no blocks is left out.
"""
from bench.report.sections.base import SECTIONS, ReportData, ReportSection
from plugin import import_plugins

import_plugins(__name__, __path__)

__all__ = ["SECTIONS", "ReportData", "ReportSection"]
