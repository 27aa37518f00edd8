"""`python -m bench.experiments.loud_mismatch`: the seed's loud-mismatch table, computed with the
triple variant's own scoring function (the definition is in analyses/loud_mismatch.py, whose
report section shows it wherever the triple variant ran).

    python -m bench.experiments.loud_mismatch                  # the table as Markdown on stdout
    python -m bench.experiments.loud_mismatch --out table.csv  # or table.md
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from analyses.loud_mismatch import loud_mismatch_table


def write_table(table: pd.DataFrame, path: Path) -> None:
    """CSV for a .csv path, Markdown for any other."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        path.write_text(table.to_markdown(index=False, floatfmt=".4f") + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.experiments.loud_mismatch", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the table here: .csv for CSV, otherwise Markdown")
    arguments = parser.parse_args(argv)
    table = loud_mismatch_table()
    if arguments.out is None:
        print(table.to_markdown(index=False, floatfmt=".4f"))
    else:
        write_table(table, arguments.out)
        print(f"loud-mismatch table: {arguments.out}")


if __name__ == "__main__":
    main()
