"""`python -m bench.report <sweep_dir>`: gather every result.json under a sweep directory into
tidy tables, seaborn figures and a report, under ``reports/<sweep name>/``:

    report.md, report.html          the same report; the HTML is one self-contained file
    figures/*.png                   learning curves, length generalisation, attention, head scores
    results.parquet / .csv          one row per run: identity, status, metrics, flattened config
    curves / lengths / heads        one row per run and evaluation step / length / head

A Hydra callback (bench.callbacks) writes it when a sweep ends. A partial sweep gives a valid
report that lists the jobs still running, failed or missing.
"""
from __future__ import annotations

import argparse
import base64
import html
import json
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Union

import pandas as pd
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from bench import figures
from bench.analysis import ATTENTION_FILE
from bench.cli import job_override_lists
from bench.config import CONF_DIR, CONFIG_NAME, RUN_CONTROL_KEYS, ConfigError
from bench.loud_mismatch import loud_mismatch_table
from bench.results import RESULT_FILE, atomic_path

REPORTS_DIR = Path("reports")
# Written by the speed suite (`python -m pytest benchmarks/test_speed.py --benchmark-json=...`).
SPEED_FILE = REPORTS_DIR / "speed.json"
REFERENCE = "sdpa (reference)"
RUN_COLUMNS = ["variant", "task", "seed", "status"]
HEAD_SCORES = ["previous_token", "duplicate_token", "induction"]
# Config columns that place a run in a sweep, or steer how it ran, rather than settings to compare.
NOT_SETTINGS = {"seed", "variant.name", "task.name", *RUN_CONTROL_KEYS}


@dataclass
class Results:
    runs: pd.DataFrame
    curves: pd.DataFrame = field(default_factory=pd.DataFrame)
    lengths: pd.DataFrame = field(default_factory=pd.DataFrame)
    heads: pd.DataFrame = field(default_factory=pd.DataFrame)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Figure:
    path: Path
    caption: str


Block = Union[str, pd.DataFrame, Figure]


def load_results(sweep_dir: Path) -> Results:
    """Every result.json under sweep_dir as tidy tables, one row per config (see latest_per_config)."""
    runs, curves, lengths, heads, records = [], [], [], [], {}
    for path in sorted(Path(sweep_dir).rglob(RESULT_FILE)):
        run_id = str(path.parent.relative_to(sweep_dir))
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            runs.append({"run": run_id, "status": "unreadable", "error": f"{type(error).__name__}: {error}"})
            continue
        records[run_id] = record
        runs.append({"run": run_id, **run_row(record)})
        identity = {"run": run_id, **{key: record.get(key) for key in ("variant", "task", "seed")}}
        curves.extend({**identity, **point} for point in record.get("curve") or [])
        lengths.extend({**identity, **point} for point in record.get("length_generalisation") or [])
        heads.extend({**identity, "head": head, **scores} for head, scores in (record.get("head_scores") or {}).items())
    runs = latest_per_config(pd.DataFrame(runs, columns=None if runs else ["run", *RUN_COLUMNS]))
    kept = set(runs["run"])
    return Results(
        runs, rows_of(curves, kept), rows_of(lengths, kept), rows_of(heads, kept),
        {run: record for run, record in records.items() if run in kept},
    )  # fmt: skip


def rows_of(rows: list[dict[str, Any]], runs: set[str]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    return table[table["run"].isin(runs)].reset_index(drop=True) if len(table) else table


def latest_per_config(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per config hash (a sweep re-run into another directory must not count twice):
    a completed run before any other, then the one that finished last."""
    if "config_hash" not in runs or runs["config_hash"].isna().all():
        return runs
    order = runs.assign(_completed=runs["status"] == "completed").sort_values(["_completed", "finished_at"], na_position="first")
    hashed = order[order["config_hash"].notna()].drop_duplicates("config_hash", keep="last")
    return pd.concat([hashed, order[order["config_hash"].isna()]]).drop(columns="_completed").sort_index()


def run_row(record: dict[str, Any]) -> dict[str, Any]:
    environment = record.get("environment", {})
    row = {key: record.get(key) for key in RUN_COLUMNS}
    row.update({f"final_{key}": value for key, value in (record.get("metrics") or {}).items()})
    for key in ("steps_to_target", "steps_run", "n_params", "wall_time_s", "train_tokens_per_s", "finished_at", "error"):
        row[key] = record.get(key)
    row.update(config_hash=record.get("config_hash"), git_commit=environment.get("git_commit"))
    row.update(flatten(record.get("config", {})))
    return row


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if not isinstance(value, list) else str(value)
    return flat


def swept_settings(runs: pd.DataFrame) -> list[str]:
    """Config columns that differ between runs of the same task (besides variant and seed)."""
    config_columns = [c for c in runs.columns if "." in c and c not in NOT_SETTINGS]
    by_task = runs.astype({c: str for c in config_columns}).groupby("task")
    return [c for c in config_columns if (by_task[c].nunique() > 1).any()]


def best_learning_rates(done: pd.DataFrame, settings: list[str]) -> pd.DataFrame:
    """Where several learning rates were swept, keep for each setting × task only the runs of the
    rate with the best mean final accuracy (the field's convention: architectures differ in how
    narrow their good window is)."""
    if "train.lr" not in settings:
        return done
    group = ["variant", *[s for s in settings if s != "train.lr"], "task"]
    means = done.groupby([*group, "train.lr"], dropna=False)["final_accuracy"].mean().reset_index()
    best = means.loc[means.groupby(group, dropna=False)["final_accuracy"].idxmax(), [*group, "train.lr"]]
    return done.merge(best, on=[*group, "train.lr"])


def setting_labels(runs: pd.DataFrame, settings: list[str]) -> pd.Series:
    """'standard', or 'standard model.d_model=128' where a sweep varied more than variant and seed."""
    labels = runs["variant"].astype(str)
    for column in settings:
        labels = labels + f" {column}=" + runs[column].astype(str)
    return labels


def mean_std(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "—"
    if len(values) == 1:
        return f"{values.iloc[0]:.3f} (n=1)"
    return f"{values.mean():.3f} ± {values.std():.3f} (n={len(values)})"


def reached(values: pd.Series) -> str:
    hits = values.dropna()
    median = f"{hits.median():.0f}" if len(hits) else "—"
    return f"{median} ({len(hits)}/{len(values)})"


def summary_blocks(done: pd.DataFrame) -> list[Block]:
    settings = swept_settings(done)
    done = best_learning_rates(done, settings)
    done = done.assign(setting=setting_labels(done, [s for s in settings if s != "train.lr"]))
    grouped = done.groupby(["setting", "task"])
    accuracy = grouped["final_accuracy"].agg(mean_std).unstack("task").reset_index()
    detail = grouped.agg(
        accuracy=("final_accuracy", mean_std),
        exact_match=("final_exact_match", mean_std),
        steps_to_target=("steps_to_target", reached),
        parameters=("n_params", "first"),
        tokens_per_s=("train_tokens_per_s", lambda v: f"{v.mean():,.0f}" if v.notna().any() and v.mean() else "—"),
    ).reset_index()
    if "train.lr" in settings:
        detail.insert(2, "best lr", grouped["train.lr"].first().to_numpy())
    return [
        "Final eval accuracy on scored positions, mean ± std over seeds (n = seeds):",
        accuracy.rename(columns={"setting": "variant"}),
        "Steps to target: median over the seeds that reached the target accuracy (reached / runs). "
        "Tokens/s: training throughput. " + ("Swept learning rates: the best per variant × task is shown." if "train.lr" in settings else ""),
        detail.rename(columns={"setting": "variant"}),
    ]


def first_completed_runs(done: pd.DataFrame) -> pd.DataFrame:
    """One run per variant × task (the lowest seed), for the per-example figures."""
    return done.sort_values("seed").drop_duplicates(["variant", "task"]).sort_values(["variant", "task"])


def attention_blocks(results: Results, done: pd.DataFrame, sweep_dir: Path, figure_dir: Path) -> list[Block]:
    blocks: list[Block] = []
    for row in first_completed_runs(done).itertuples():
        attention_file = Path(sweep_dir) / row.run / ATTENTION_FILE
        if attention_file.exists():
            title = f"{row.variant} on {row.task} (seed {row.seed}): attention of one held-out sequence"
            path = figures.attention_heads(attention_file, title, figure_dir / f"attention_{row.variant}_{row.task}.png")
            blocks.append(Figure(path, title + "; rows are queries, columns keys, one panel per head."))
    return blocks


def head_blocks(results: Results, figure_dir: Path) -> list[Block]:
    if results.heads.empty:
        return []
    table = results.heads.groupby(["variant", "task", "head"])[HEAD_SCORES].mean().round(3).reset_index()
    path = figures.head_scores(results.heads, figure_dir / "head_scores.png")
    return [
        "Scores on the [BOS] + R + R probe at each run's training length, mean over seeds: previous-token "
        "(attention to i−1), duplicate-token (to the earlier copy of my token) and induction (to the token "
        "after it), each in [0, 1].",
        table,
        Figure(path, "Head scores per head (bar: mean over seeds; line: min–max)."),
    ]


def length_blocks(results: Results, done: pd.DataFrame, figure_dir: Path) -> list[Block]:
    if results.lengths.empty:
        return []
    chance = {task: figures.chance_level(vocab) for task, vocab in done.groupby("task")["task.vocab_size"].first().items()}
    path = figures.length_generalisation(results.lengths, chance, figure_dir / "length_generalisation.png")
    lengths = results.lengths.assign(factor=results.lengths["factor"].map("{}× training length".format))
    table = lengths.groupby(["variant", "task", "factor"])["accuracy"].agg(mean_std).unstack("factor").reset_index()
    return [
        Figure(path, "Eval accuracy at 1×, 2× and 4× the training length (dotted: chance, 1 / vocabulary)."),
        table,
    ]


def loud_mismatch_blocks(done: pd.DataFrame, figure_dir: Path) -> list[Block]:
    if "triple" not in set(done["variant"]):
        return []
    table = loud_mismatch_table()
    return [
        "The seed's analysis, from the triple variant's own scoring function: query plane q = e1, r = e2; "
        "the true match (q + r)/√2 lies in the plane; a loud mismatch is a key of magnitude m orthogonal to "
        "it plus 0.1 q. Scores unscaled, as in the seed.",
        table,
        Figure(figures.loud_mismatch(table, figure_dir / "loud_mismatch.png"), "Scores against the mismatched key's magnitude (dotted: the true match)."),
    ]


def load_speed(path: Path) -> tuple[pd.DataFrame, float | None, dict[str, Any]]:
    """(timings, matmul ceiling in GFLOP/s, machine info) from a pytest-benchmark JSON file."""
    data = json.loads(Path(path).read_text())
    rows, ceiling = [], None
    for benchmark in data.get("benchmarks", []):
        info, median = benchmark.get("extra_info", {}), benchmark["stats"]["median"]
        if info.get("mode") == "matmul":
            ceiling = info["flops"] / median / 1e9
        elif {"variant", "T", "mode"} <= info.keys():
            rows.append({
                "variant": info["variant"], "mode": info["mode"], "T": info["T"], "batch": info.get("batch"),
                "median_ms": median * 1e3, "iqr_ms": benchmark["stats"]["iqr"] * 1e3,
                "gflops_per_s": info["flops"] / median / 1e9 if info.get("flops") else None,
                "tokens_per_s": info.get("tokens_per_s"), "peak_memory_mb": (info.get("peak_memory_bytes") or 0) / 2**20,
            })  # fmt: skip
    machine = {**data.get("machine_info", {}), "datetime": data.get("datetime")}
    return pd.DataFrame(rows), ceiling, machine


def speed_blocks(speed_file: Path | None, figure_dir: Path) -> list[Block]:
    if speed_file is None or not Path(speed_file).exists():
        return []
    timings, ceiling, machine = load_speed(speed_file)
    if timings.empty:
        return []
    reference = timings[timings["variant"] == REFERENCE].set_index(["mode", "T"])["median_ms"]
    layers = timings[timings["mode"] != "train_step"].copy()
    layers["vs_sdpa"] = [row.median_ms / reference.get((row.mode, row.T), float("nan")) for row in layers.itertuples()]
    layers["of_ceiling"] = layers["gflops_per_s"] / ceiling if ceiling else float("nan")
    layers["cell"] = [
        f"{row.median_ms:.2f} ms ({row.vs_sdpa:.2f}× sdpa, {row.of_ceiling:.0%} of peak)" for row in layers.itertuples()
    ]
    table = layers.pivot_table(index=["mode", "variant"], columns="T", values="cell", aggfunc="first").reset_index()
    steps = timings[timings["mode"] == "train_step"][["variant", "T", "batch", "median_ms", "iqr_ms", "tokens_per_s"]]
    blocks: list[Block] = [
        f"From {Path(speed_file).name}, measured {machine.get('datetime', '?')} on "
        f"{machine.get('cpu', {}).get('brand_raw', machine.get('machine', '?'))}: one attention layer, forward and "
        "forward + backward, at a fixed number of tokens per batch; median over rounds. Each cell: median time "
        "(ratio to raw scaled_dot_product_attention with the same projections; share of this machine's float32 "
        f"matmul ceiling{f' of {ceiling:.1f} GFLOP/s' if ceiling else ''}).",
        table,
        Figure(figures.speed(layers, figure_dir / "speed.png"), "Median time against T, log-log, with an O(T²) guide."),
    ]
    if layers["gflops_per_s"].notna().any():
        blocks.append(Figure(figures.throughput(layers, ceiling, figure_dir / "gflops.png"), "Achieved GFLOP/s against T."))
    if len(steps):
        blocks += ["One full training step of the default model through the framework:", steps.round(2)]
    return blocks


def expected_jobs(sweep_dir: Path) -> list[str] | None:
    """The job directories the sweep's command asked for, from its multirun.yaml; None if unknown."""
    saved = Path(sweep_dir) / "multirun.yaml"
    if not saved.exists():
        return None
    hydra_config = OmegaConf.load(saved).hydra
    if OmegaConf.to_container(hydra_config.sweep)["subdir"] != "${hydra.job.override_dirname}":
        return None
    overrides = [*hydra_config.overrides.hydra, *hydra_config.overrides.task]
    excluded = set(hydra_config.job.config.override_dirname.exclude_keys)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
            jobs = job_override_lists(overrides, True, parser, CONFIG_NAME)
            names = []
            for job in jobs:
                lines = sorted(o.input_line for o in parser.parse_overrides(job) if o.key_or_group not in excluded)
                names.append(",".join(lines))
    except ConfigError:
        return None
    return names


def provenance(results: Results) -> pd.DataFrame:
    environments = [r.get("environment", {}) for r in results.records.values()]
    first = environments[0] if environments else {}
    started = sorted(r["started_at"] for r in results.records.values() if r.get("started_at"))
    rows = {
        "command": first.get("command", "—"),
        "git commit": ", ".join(sorted({str(e.get("git_commit")) + (" (dirty)" if e.get("git_dirty") else "") for e in environments})) or "—",
        "packages": ", ".join(f"{k} {v}" for k, v in first.get("versions", {}).items()) or "—",
        "machine": first.get("machine", "—"),
        "runs started": f"{started[0]} to {started[-1]}" if started else "—",
        "report written": f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} on {platform.node()}",
    }
    return pd.DataFrame({"": list(rows), "value": list(rows.values())})


def build_sections(results: Results, sweep_dir: Path, figure_dir: Path, speed_file: Path | None) -> list[tuple[str, list[Block]]]:
    runs = results.runs
    done = runs[runs["status"] == "completed"]
    counts = ", ".join(f"{n} {s}" for s, n in runs["status"].value_counts().items())
    overview = [f"{len(runs)} runs: {counts or 'none yet'}."]
    expected = expected_jobs(sweep_dir)
    missing = sorted(set(expected) - set(runs["run"])) if expected is not None else []
    if expected is not None:
        overview.append(f"The sweep asked for {len(expected)} jobs; {len(missing)} have no result yet.")
    sections: list[tuple[str, list[Block]]] = [("Overview", overview)]
    if len(done):
        sections.append(("Summary", summary_blocks(done)))
    if len(results.curves):
        curves = results.curves[results.curves["run"].isin(done["run"])]
        sections.append(("Learning curves", [
            Figure(figures.learning_curves(curves, "eval_accuracy", "eval accuracy", figure_dir / "curves_accuracy.png"), "Eval accuracy against training step, one panel per task."),
            Figure(figures.learning_curves(curves, "eval_loss", "eval loss (nats)", figure_dir / "curves_loss.png", log_y=True), "Eval cross-entropy on scored positions against training step."),
        ]))  # fmt: skip
    sections.append(("Length generalisation", length_blocks(results, done, figure_dir)))
    sections.append(("Attention patterns", attention_blocks(results, done, sweep_dir, figure_dir)))
    sections.append(("Head scores", head_blocks(results, figure_dir)))
    sections.append(("Triple-product: loud mismatches", loud_mismatch_blocks(done, figure_dir)))
    sections.append(("Speed", speed_blocks(speed_file, figure_dir)))
    unfinished = runs[runs["status"] != "completed"]
    if len(unfinished):
        columns = [c for c in ["run", *RUN_COLUMNS, "error"] if c in unfinished]
        sections.append(("Runs that did not complete", ["Failed and diverged runs with their error; running ones may still finish.", unfinished[columns]]))
    if missing:
        sections.append(("Missing jobs", [
            "Asked for by the sweep (a glob expanded over the variants and tasks registered now), with no result.json yet:",
            pd.DataFrame({"job": missing}),
        ]))  # fmt: skip
    sections.append(("Provenance", [provenance(results)]))
    return [(title, blocks) for title, blocks in sections if blocks]


def markdown(title: str, sections: list[tuple[str, list[Block]]], out_dir: Path) -> str:
    lines = [f"# {title}"]
    for heading, blocks in sections:
        lines += ["", f"## {heading}"]
        for block in blocks:
            if isinstance(block, pd.DataFrame):
                lines += ["", block.to_markdown(index=False)]
            elif isinstance(block, Figure):
                lines += ["", f"![{block.caption}]({block.path.relative_to(out_dir).as_posix()})", "", f"*{block.caption}*"]
            else:
                lines += ["", block]
    return "\n".join(lines) + "\n"


STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}img{max-width:100%;display:block;margin:1em 0}figcaption{color:#555;font-size:13px}"""


def html_page(title: str, sections: list[tuple[str, list[Block]]]) -> str:
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]  # fmt: skip
    for heading, blocks in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        for block in blocks:
            if isinstance(block, pd.DataFrame):
                parts.append(block.to_html(index=False, border=0, na_rep="—"))
            elif isinstance(block, Figure):
                encoded = base64.b64encode(block.path.read_bytes()).decode()
                parts.append(f"<figure><img src='data:image/png;base64,{encoded}' alt='{html.escape(block.caption)}'>"
                             f"<figcaption>{html.escape(block.caption)}</figcaption></figure>")  # fmt: skip
            else:
                parts.append(f"<p>{html.escape(block)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_tables(results: Results, out_dir: Path) -> None:
    for table, stem in ((results.runs, "results"), (results.curves, "curves"), (results.lengths, "lengths"), (results.heads, "heads")):
        with atomic_path(out_dir / f"{stem}.parquet") as temporary:
            table.to_parquet(temporary, index=False)
        with atomic_path(out_dir / f"{stem}.csv") as temporary:
            table.to_csv(temporary, index=False)


def write_report(sweep_dir: Path, out_dir: Path | None = None, speed_file: Path | None = SPEED_FILE) -> Path:
    """Write the tables, figures, report.md and report.html for sweep_dir; returns report.md."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"no sweep directory at {sweep_dir}")
    name = sweep_dir.resolve().name
    out_dir = Path(out_dir or REPORTS_DIR / name)
    figure_dir = out_dir / "figures"
    figure_dir.mkdir(parents=True, exist_ok=True)
    results = load_results(sweep_dir)
    write_tables(results, out_dir)
    sections = build_sections(results, sweep_dir, figure_dir, speed_file)
    title = f"Sweep {name}"
    with atomic_path(out_dir / "report.html") as temporary:
        temporary.write_text(html_page(title, sections))
    report = out_dir / "report.md"
    with atomic_path(report) as temporary:
        temporary.write_text(markdown(title, sections, out_dir))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a directory with result.json files below it")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: reports/<sweep name>)")
    parser.add_argument("--speed", type=Path, default=SPEED_FILE, help=f"speed-suite JSON (default: {SPEED_FILE})")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"no sweep directory at {args.sweep_dir}")
    print(f"report: {write_report(args.sweep_dir, args.out, args.speed)}")


if __name__ == "__main__":
    main()
