"""The house: no work at import, a broken plug-in file named in one line while the others work,
report sections as a plug-in kind, each report protocol kept per sweep, and config values of any
type in the report's words."""
from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_report import result, write_results

from analyses import Figure
from bench.report import write_report
from bench.report.build import build_sections
from bench.report.protocol import select_runs
from bench.report.records import load_results, load_tables
from bench.report.sections import SECTIONS, ReportData, ReportSection
from plugin import BROKEN, import_plugins

REPO = Path(__file__).resolve().parent.parent
COMMITTED_REPORTS = sorted(path.parent for path in (REPO / "reports").glob("*/results.parquet"))
PLOTTING = ("matplotlib", "seaborn")


def modules_after(code: str) -> set[str]:
    """The modules loaded by running `code` in a fresh interpreter."""
    probe = f"import sys\n{code}\nprint(' '.join(sys.modules))"
    completed = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    return set(completed.stdout.split())


def test_help_imports_no_plotting_library_nor_torch():
    loaded = modules_after("import runpy, contextlib, io\nsys.argv = ['bench', '--help']\n"
                           "with contextlib.redirect_stdout(io.StringIO()):\n    runpy.run_module('bench', run_name='__main__')")  # fmt: skip
    assert not {"torch", "scipy", *PLOTTING} & loaded


def test_importing_the_plug_ins_and_the_report_draws_nothing_and_registers_nothing():
    code = ("import analyses, variants, tasks, bench.core.job, bench.report.build\n"
            "from hydra.core.config_store import ConfigStore\nassert 'bench_schema.yaml' not in ConfigStore.instance().list('')")
    assert not set(PLOTTING) & modules_after(code)


def test_a_plug_in_file_that_fails_to_import_is_named_and_the_others_still_register(tmp_path, caplog):
    package = tmp_path / "lab_plugins"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "good.py").write_text("LOADED = True\n")
    (package / "broken.py").write_text("import a_module_that_does_not_exist\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import_plugins("lab_plugins", [str(package)])
        assert sys.modules["lab_plugins.good"].LOADED
        assert "lab_plugins.broken" in BROKEN and "No module named 'a_module_that_does_not_exist'" in BROKEN["lab_plugins.broken"]
        warnings = [record.getMessage() for record in caplog.records if "lab_plugins.broken" in record.getMessage()]
        assert len(warnings) == 1 and "\n" not in warnings[0]
    finally:
        sys.path.remove(str(tmp_path))
        BROKEN.pop("lab_plugins.broken", None)
        for name in [name for name in sys.modules if name.startswith("lab_plugins")]:
            del sys.modules[name]


PLUG_IN_PACKAGES = ("variants", "tasks", "analyses", "bench/report/sections")


def test_every_plug_in_kind_names_a_broken_file_and_keeps_the_others(tmp_path):
    for top in ("plugin", "variants", "tasks", "analyses", "bench"):
        shutil.copytree(REPO / top, tmp_path / top, ignore=shutil.ignore_patterns("__pycache__"))
    for package in PLUG_IN_PACKAGES:
        (tmp_path / package / "zz_broken.py").write_text("raise RuntimeError('a bug in a user file')\n")
    probe = ("import variants, tasks, analyses, bench.report.sections as sections\n"
             "from plugin import BROKEN\nprint(sorted(BROKEN))\n"
             "print(len(variants.VARIANTS), len(tasks.TASKS), len(analyses.ANALYSES), len(sections.SECTIONS))")
    completed = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    broken, counts = completed.stdout.splitlines()
    assert broken == str(sorted(f"{package.replace('/', '.')}.zz_broken" for package in PLUG_IN_PACKAGES))
    assert all(int(count) > 1 for count in counts.split()), counts
    assert completed.stderr.count("a bug in a user file") == len(PLUG_IN_PACKAGES), completed.stderr


def test_a_user_section_registers_in_one_file_and_appears_in_its_order(tmp_path):
    class Parameters(ReportSection):
        name = "test_parameters"
        title = "Parameters per setting"
        order = 45

        def blocks(self, data: ReportData) -> list:
            return ["Parameters per setting.", data.selection.selected.groupby("setting")["n_params"].first().reset_index()]

    try:
        sweep = write_results(tmp_path / "sweep", [result("standard", "copy", seed, 0.9) for seed in (0, 1)])
        text = write_report(sweep, tmp_path / "out").read_text()
    finally:
        del SECTIONS["test_parameters"]
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings.index("## Parameters per setting") == headings.index("## Summary") + 1


def test_a_section_that_breaks_is_named_and_the_report_is_still_written(tmp_path):
    class Broken(ReportSection):
        name = "test_broken"
        title = "Broken section"
        order = 41

        def blocks(self, data: ReportData) -> list:
            raise KeyError("no such column")

    try:
        text = write_report(write_results(tmp_path / "sweep", [result("standard", "copy", 0, 0.9)]), tmp_path / "out").read_text()
    finally:
        del SECTIONS["test_broken"]
    assert "This section could not be built: KeyError" in text and "## Provenance" in text


@pytest.mark.parametrize("report", COMMITTED_REPORTS, ids=[path.name for path in COMMITTED_REPORTS])
def test_every_text_section_builds_from_every_committed_reports_tables(report, tmp_path):
    """Sections that draw no figure, over the saved tables of each example report (the figures'
    sections run over real sweeps in the slow tests and over every sweep these tests make)."""
    data = ReportData(load_tables(report), [], tmp_path)
    assert len(data.selection.selected)
    for name in ("findings", "overview", "leaderboard", "throughput", "unfinished", "provenance"):
        for heading, blocks in SECTIONS[name]().render(data):
            assert heading and all(isinstance(block, (str, list)) or hasattr(block, "columns") for block in blocks), name


def merged_protocol_runs(tmp_path: Path) -> list[Path]:
    """Sweep a selects on train.lr alone and varies weight decay as a setting; sweep b (MAD's
    protocol) selects over learning rate and weight decay together."""
    sweeps = []
    for sweep, task, select_on in (("a", "copy", ["train.lr"]), ("b", "induction", ["train.lr", "train.weight_decay"])):
        records = []
        for decay, accuracy in ((0.0, 0.6), (0.1, 0.9)):
            for seed in (0, 1):
                record = result("standard", task, seed, accuracy)
                record["config"]["train"]["weight_decay"] = decay
                record["config"]["protocol"] = {"select_on": select_on, "score": "none"}
                record["config_hash"] += f"{decay}{sweep}"
                records.append(record)
        sweeps.append(write_results(tmp_path / sweep, records))
    return sweeps


def test_merged_sweeps_each_keep_their_own_protocol(tmp_path):
    """Defect 7 of issue 23: the first record's protocol was applied to both."""
    selected = select_runs(load_results(*merged_protocol_runs(tmp_path)).runs).selected
    copy, induction = selected[selected["task"] == "copy"], selected[selected["task"] == "induction"]
    assert sorted(copy["setting"].unique()) == ["standard train.weight_decay=0", "standard train.weight_decay=0.1"]
    assert list(induction["setting"].unique()) == ["standard"] and set(induction["train.weight_decay"]) == {0.1}


def test_a_string_valued_selection_key_reads_as_written(tmp_path):
    """Defect 4 of issue 23: protocol.select_on=[model.mlp_activation] crashed the report on ':g'."""
    records = []
    for activation, accuracy in (("gelu", 0.9), ("relu", 0.7)):
        for seed in (0, 1):
            record = result("standard", "copy", seed, accuracy)
            record["config"]["model"] = {"mlp_activation": activation}
            record["config"]["protocol"] = {"select_on": ["model.mlp_activation"], "score": "none"}
            record["config_hash"] += activation
            records.append(record)
    text = write_report(write_results(tmp_path / "sweep", records), tmp_path / "out").read_text()
    assert "could not be built" not in text
    grid = select_runs(load_results(tmp_path / "sweep").runs).grid
    assert grid.loc[grid["chosen"], "model.mlp_activation"].tolist() == ["gelu"]


# Which project packages each layer may import: plug-ins never reach up into the framework.
LAYERS = {
    "plugin": {"plugin"},
    "variants": {"plugin", "variants"},
    "tasks": {"plugin", "tasks"},
    "analyses": {"plugin", "variants", "tasks", "analyses"},
    "bench": {"plugin", "variants", "tasks", "analyses", "bench"},
    "hydra_plugins": {"plugin", "variants", "tasks", "analyses", "bench", "hydra_plugins"},
}


def test_imports_flow_one_way():
    climbing = []
    for layer, allowed in LAYERS.items():
        for path in (REPO / layer).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                climbing += [f"{path.relative_to(REPO)} imports {name}" for name in names if name.split(".")[0] in LAYERS and name.split(".")[0] not in allowed]
    assert not climbing


def test_a_colour_is_a_function_of_the_name_alone():
    from plugin.plotting import variant_colour

    assert variant_colour("standard") == variant_colour("standard") != variant_colour("triple")
    assert re.fullmatch(r"#[0-9a-f]{6}", variant_colour("a variant nobody has written yet"))



def test_settings_of_one_variant_get_their_own_shades_and_a_sole_setting_its_variants_colour():
    from plugin.plotting import setting_colours, variant_colour

    colours = setting_colours([("standard lr 1e-3", "standard"), ("standard lr 3e-3", "standard"), ("standard lr 1e-2", "standard"),
                               ("triple", "triple"), ("triple", "triple")])  # fmt: skip
    assert colours["triple"] == variant_colour("triple") and len(colours) == 4
    assert len({colours[f"standard lr {lr}"] for lr in ("1e-3", "3e-3", "1e-2")}) == 3, "no two settings share a colour"


@pytest.mark.slow
@pytest.mark.parametrize("report", COMMITTED_REPORTS, ids=[path.name for path in COMMITTED_REPORTS])
def test_every_section_with_its_figures_builds_from_every_committed_reports_tables(report, tmp_path):
    """Every registered section, figures included, over each example report's saved tables (2 min 40 s in all)."""
    sections = build_sections(ReportData(load_tables(report), [], tmp_path))
    failed = [heading for heading, blocks in sections if any(isinstance(block, str) and "could not be built" in block for block in blocks)]
    assert sections and not failed
    assert all(figure.path.exists() for _, blocks in sections for figure in blocks if isinstance(figure, Figure))
