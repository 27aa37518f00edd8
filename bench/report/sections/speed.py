"""The report's speed section, from the speed suite's pytest-benchmark JSON.

A report shows only speed results measured for its own variants: from the JSON given on the
command line, or else from the sweep's own ``speed.json`` (the speed suite's ``--benchmark-json``
written into the sweep directory), never from a file another run left behind.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from analyses import Block, Figure
from bench.core.results import is_kind, read_json
from bench.report import figures
from bench.report.sections.base import ReportData, ReportSection
from bench.speed import REFERENCE

SWEEP_SPEED_FILE = "speed.json"


def default_speed_file(sweep_dirs: list[Path]) -> Path | None:
    """The first sweep's own speed.json, if one of them has one."""
    own = [Path(d) / SWEEP_SPEED_FILE for d in sweep_dirs if (Path(d) / SWEEP_SPEED_FILE).exists()]
    return own[0] if own else None


class Speed(ReportSection):
    name = "speed"
    title = "Speed"
    order = 100
    needs_selected_runs = False

    def blocks(self, data: ReportData) -> list[Block]:
        variant_names = set(data.selection.runs["variant"].dropna()) if "variant" in data.selection.runs else set()
        return speed_blocks(data.speed_file or default_speed_file(data.sweep_dirs), variant_names, data.figure_dir)


# The fields of a speed-suite entry that the section reads, with their kinds (bench.core.results.is_kind).
ENTRY_FIELDS = {"variant": str, "mode": str, "T": "integer", "batch": "integer", "flops": "number",
                "flops_source": str, "tokens_per_s": "number", "peak_memory_bytes": "integer"}  # fmt: skip


def entry_problem(benchmark: Any) -> str | None:
    """What keeps one pytest-benchmark entry out of the section; None for a sound one."""
    if not isinstance(benchmark, dict) or not isinstance(benchmark.get("stats"), dict) or not isinstance(benchmark.get("extra_info", {}), dict):
        return "not a benchmark with stats"
    stats, info = benchmark["stats"], benchmark.get("extra_info", {})
    if not all(is_kind(stats.get(key), "number") and stats.get(key) is not None for key in ("median", "iqr")) or stats["median"] <= 0:
        return f"{benchmark.get('name', '?')}: its stats have no positive median and iqr"
    wrong = [key for key, kind in ENTRY_FIELDS.items() if not is_kind(info.get(key), kind)]
    return f"{benchmark.get('name', '?')}: {wrong[0]} is {info[wrong[0]]!r}" if wrong else None


def load_speed(path: Path) -> tuple[pd.DataFrame, float | None, dict[str, Any], list[str]]:
    """(timings, matmul ceiling in GFLOP/s, machine info, entries left out with why) from a
    pytest-benchmark JSON file. Raises ValueError, naming the problem, for a file that is no such JSON."""
    data = read_json(Path(path))
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ValueError(f"{Path(path).name} is not a pytest-benchmark JSON object with a list of benchmarks")
    rows, ceiling, left_out = [], None, []
    for benchmark in data["benchmarks"]:
        problem = entry_problem(benchmark)
        if problem is not None:
            left_out.append(problem)
            continue
        info, median = benchmark.get("extra_info", {}), benchmark["stats"]["median"]
        if info.get("mode") == "matmul" and info.get("flops"):
            ceiling = info["flops"] / median / 1e9
        elif {"variant", "T", "mode"} <= info.keys():
            rows.append({
                "variant": info["variant"], "mode": info["mode"], "T": info["T"], "batch": info.get("batch"),
                "median_ms": median * 1e3, "iqr_ms": benchmark["stats"]["iqr"] * 1e3,
                "gflops_per_s": info["flops"] / median / 1e9 if info.get("flops") else None,
                "flops_source": info.get("flops_source"),
                "tokens_per_s": info.get("tokens_per_s"), "peak_memory_mb": (info.get("peak_memory_bytes") or 0) / 2**20,
            })  # fmt: skip
    machine_info = data.get("machine_info") if isinstance(data.get("machine_info"), dict) else {}
    machine = {**machine_info, "datetime": data.get("datetime")}
    return pd.DataFrame(rows), ceiling, machine, left_out


def speed_cell(median_ms: float, vs_sdpa: float, of_ceiling: float) -> str:
    """One layer's time, its ratio to raw SDPA and its share of the ceiling, each only where it was measured."""
    measured = [text for value, text in ((vs_sdpa, f"{vs_sdpa:.2f}× sdpa"), (of_ceiling, f"{of_ceiling:.0%} of peak")) if math.isfinite(value)]
    return f"{median_ms:.2f} ms" + (f" ({', '.join(measured)})" if measured else "")


def speed_blocks(speed_file: Path | None, variant_names: set[str], figure_dir: Path) -> list[Block]:
    if speed_file is None or not Path(speed_file).exists():
        return []
    try:
        timings, ceiling, machine, left_out = load_speed(speed_file)
    except ValueError as error:
        return [f"The speed file is left out: {error}."]
    notes: list[Block] = [f"{len(left_out)} entries of {Path(speed_file).name} are left out (the first: {left_out[0]})."] if left_out else []
    if timings.empty:
        return notes
    timings = timings[timings["variant"].isin(variant_names | {REFERENCE})]
    if not (set(timings["variant"]) - {REFERENCE}):
        return []
    reference = timings[timings["variant"] == REFERENCE].set_index(["mode", "T"])["median_ms"]
    layers = timings[timings["mode"] != "train_step"].copy()
    layers["vs_sdpa"] = [row.median_ms / reference.get((row.mode, row.T), float("nan")) for row in layers.itertuples()]
    layers["of_ceiling"] = layers["gflops_per_s"] / ceiling if ceiling else float("nan")
    layers["cell"] = [speed_cell(row.median_ms, row.vs_sdpa, row.of_ceiling) for row in layers.itertuples()]
    table = layers.pivot_table(index=["mode", "variant"], columns="T", values="cell", aggfunc="first").reset_index()
    table.columns = [str(column) if column in ("mode", "variant") else f"T={column}" for column in table.columns]
    steps = timings[timings["mode"] == "train_step"][["variant", "T", "batch", "median_ms", "iqr_ms", "tokens_per_s"]]
    sources = ", ".join(sorted(f"{v}: {s}" for v, s in layers[["variant", "flops_source"]].dropna().drop_duplicates().itertuples(index=False)))
    cpu = machine.get("cpu") if isinstance(machine.get("cpu"), dict) else {}
    blocks: list[Block] = [
        *notes,
        f"From {Path(speed_file).name}, measured {machine.get('datetime', '?')} on "
        f"{cpu.get('brand_raw', machine.get('machine', '?'))}: one attention layer, forward and "
        "forward + backward, at a fixed number of tokens per batch; median over rounds. Each cell: median time "
        "(ratio to raw scaled_dot_product_attention with the same projections, measured in the same run; "
        + (f"share of this machine's float32 matmul ceiling of {ceiling:.1f} GFLOP/s" if ceiling else
           "no share of the matmul ceiling: the file has no matmul entry (the speed suite's test_matmul_ceiling)")
        + "). FLOPs follow the "
        "FlashAttention convention for causal attention (the masked half not counted; forward + backward = 3.5 × "
        f"forward for the attention core) plus the projections{f' — source per variant: {sources}' if sources else ''}.",
        table,
        Figure(figures.speed(layers, REFERENCE, figure_dir / "speed.png"), "Median time against T, log-log, with an O(T²) guide; the raw-SDPA reference dashed black."),
    ]
    if layers["gflops_per_s"].notna().any():
        blocks.append(Figure(figures.throughput(layers, ceiling, REFERENCE, figure_dir / "gflops.png"), "Achieved GFLOP/s against T."))
    if len(steps):
        blocks += ["One full training step of the default model through the framework:", steps.round(2)]
    return blocks
