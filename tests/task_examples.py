"""The literal example sequence that opens a task file's docstring, for the tests that check it."""
from __future__ import annotations

from types import ModuleType

from tasks import IGNORE_INDEX


def docstring_example(module: ModuleType) -> dict[str, list[int]]:
    """The first ``inputs`` and ``targets`` rows of the module's docstring ('.' = IGNORE_INDEX)."""
    rows: dict[str, list[int]] = {}
    for line in module.__doc__.splitlines():
        label, *cells = line.split() or [""]
        if label in ("inputs", "targets") and cells and all(cell == "." or cell.isdigit() for cell in cells):
            rows.setdefault(label, [IGNORE_INDEX if cell == "." else int(cell) for cell in cells])
    assert set(rows) == {"inputs", "targets"}, f"{module.__name__} has no inputs/targets example"
    return rows
