"""`python -m bench.report <sweep_dir> [<sweep_dir> ...] [--out DIR] [--speed FILE] [--baseline REPORT]`;
`python -m bench.report --baseline REPORT [--out DIR]` re-renders a committed report from its saved runs."""
from __future__ import annotations

import argparse
from pathlib import Path

import bench
from bench.report.build import UnsafeOutput, write_report
from bench.report.records import TABLES, BaselineMismatch
from bench.external import PluginImportError, load_external

# The example reports' saved tables, shipped inside the package (a link to ./reports in the checkout;
# their Parquet files copied into the wheel), so that an installed copy compares against them too.
SHIPPED_BASELINES = Path(bench.__file__).resolve().parent / "baselines"


def holds_saved_runs(directory: Path) -> bool:
    """Whether a directory is a report with its runs' tables, which --baseline reads."""
    return (directory / f"{TABLES[0]}.parquet").is_file()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.report",
        description="Gather the results of one or more sweeps into report.md, report.html, figures and tables.",
    )
    parser.add_argument("sweep_dirs", type=Path, nargs="*",
                        help="sweep directories (result.json files below each); none, with --baseline: that report's saved runs alone, "
                             "re-rendered by this version (into its own directory unless --out)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: <sweep_dir>/report; required for several sweeps)")
    parser.add_argument("--speed", type=Path, default=None, help="a speed-suite JSON for the speed section (default: <sweep_dir>/speed.json if there is one)")
    parser.add_argument("--baseline", default=None, metavar="REPORT",
                        help="a committed report (a directory, or a name under ./reports, e.g. zoo) whose runs stand beside the sweep's, "
                             "not re-trained; refused where its task, model, training or code differ")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        load_external()  # the user's report sections and analyses, named in the environment or by installed packages
    except PluginImportError as error:
        parser.error(str(error))
    if not args.sweep_dirs and args.baseline is None:
        parser.error("name a sweep directory, or --baseline REPORT alone to re-render a committed report")
    for sweep_dir in args.sweep_dirs:
        if not sweep_dir.is_dir():
            parser.error(f"no sweep directory at {sweep_dir}")
    if len(args.sweep_dirs) > 1 and args.out is None:
        parser.error("several sweeps make one report: name its directory with --out")
    if args.speed is not None and not args.speed.is_file():
        parser.error(f"no speed file at {args.speed}")
    baseline = None
    if args.baseline is not None:
        places = (Path(args.baseline), Path("reports") / args.baseline, SHIPPED_BASELINES / args.baseline)
        baseline = next((d for d in places if holds_saved_runs(d)), None)
        if baseline is None:
            shipped = ", ".join(sorted(d.name for d in SHIPPED_BASELINES.glob("*") if holds_saved_runs(d)))
            parser.error(f"--baseline {args.baseline}: no report there; allowed: a report directory (with {TABLES[0]}.parquet), "
                         f"a name under ./reports, or a shipped one ({shipped})")  # fmt: skip
        if not args.sweep_dirs and args.out is None and baseline not in places[:2]:
            parser.error(f"--baseline {args.baseline} alone re-renders the copy shipped with the package: name the directory to write with --out")
    try:
        report = write_report(args.sweep_dirs, args.out, args.speed, baseline)
    except (UnsafeOutput, BaselineMismatch) as error:
        parser.error(str(error))
    print(f"report: {report}\n        {report.with_name('report.html')}")


if __name__ == "__main__":
    main()
