"""The seed's "loud mismatch" analysis, computed with the triple variant's own scoring function.

A query plane q = e1, r = e2 in 4 dimensions. The true match is the unit key (q + r) / sqrt 2,
inside the plane; a loud mismatch is a key of magnitude m orthogonal to the plane, plus a leak
0.1 q. The dot product scores every loud key 0.1 whatever m, while the Gram score
-det Gram(q, k, r) falls as -m^2: a loud key off the plane is pushed away, not attracted.

    python -m bench.loud_mismatch                  # the table as Markdown on stdout
    python -m bench.loud_mismatch --out table.csv  # or table.md
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd
import torch

import variants.triple as triple

MAGNITUDES = (1.0, 5.0, 10.0, 50.0, 100.0)  # the seed's
LEAK = 0.1  # the part of q in every loud key, as in the seed


def loud_mismatch_table(magnitudes: tuple[float, ...] = MAGNITUDES) -> pd.DataFrame:
    """One row per key: `key` (true match / loud mismatch), `magnitude` (the seed's Mag(K): 1 for
    the match, the orthogonal part's length m otherwise), `dot_product` q . k, `gram_score`
    -det Gram(q, k, r), unscaled as in the seed."""
    basis = torch.eye(4, dtype=torch.float64)
    q, r, off_plane = basis[0], basis[1], basis[2]
    keys = torch.stack([(q + r) / math.sqrt(2), *(m * off_plane + LEAK * q for m in magnitudes)])
    gram = triple.gram_scores(q[None], keys, r[None])[0]
    return pd.DataFrame(
        {
            "key": ["true match"] + ["loud mismatch"] * len(magnitudes),
            "magnitude": [1.0, *magnitudes],
            "dot_product": (keys @ q).tolist(),
            "gram_score": gram.tolist(),
        }
    )


def write_table(table: pd.DataFrame, path: Path) -> None:
    """CSV for a .csv path, Markdown for any other."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        path.write_text(table.to_markdown(index=False, floatfmt=".4f") + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loud_mismatch", description=__doc__.splitlines()[0])
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
