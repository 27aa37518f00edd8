"""Plug-ins from the user's own code (bench/external.py): a variant in a file outside the repository
runs through the real command, passes the contract test by one documented command, and a module that
cannot be imported stops everything in one line (tests/test_bad_input.py)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from bench import external

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def readme_variant(directory: Path) -> Path:
    """The README's KERPLE-log example, as a user's own file outside the repository."""
    path = directory / "kerple.py"
    path.write_text(re.search(r"<!-- variant-example -->\n```\w+\n(.*?)```", README, re.DOTALL).group(1))
    return path


def test_an_installed_packages_entry_point_is_imported_once(tmp_path, monkeypatch):
    (tmp_path / "probe_lab.py").write_text("IMPORTS = []\nIMPORTS.append(1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    point = metadata.EntryPoint(name="probe", value="probe_lab", group=external.ENTRY_POINT_GROUP)
    monkeypatch.setattr(external.metadata, "entry_points", lambda group: [point] if group == external.ENTRY_POINT_GROUP else [])
    monkeypatch.delenv(external.PLUGINS_VARIABLE, raising=False)
    external.entry_point_modules.cache_clear()
    try:
        assert external.load_external() == ["probe_lab"] and external.load_external() == []
        assert sys.modules["probe_lab"].IMPORTS == [1], "imported once"
    finally:
        external.LOADED.pop("probe_lab", None)
        sys.modules.pop("probe_lab", None)
        external.entry_point_modules.cache_clear()  # the fake entry point goes with the test


def test_the_command_line_names_its_plugins_to_the_processes_it_starts(monkeypatch):
    from bench.cli import plugin_names

    monkeypatch.setenv(external.PLUGINS_VARIABLE, "my_lab.first")
    names = plugin_names(["variant=x", "plugins=[my_lab.attention,./kerple.py]"])
    assert names == ["my_lab.attention", str(Path("kerple.py").resolve())], "a file's path made absolute"
    external.share_with_workers(names)
    assert os.environ[external.PLUGINS_VARIABLE] == f"my_lab.first,my_lab.attention,{Path('kerple.py').resolve()}"


@pytest.mark.slow
def test_a_users_variant_file_runs_a_sweep_with_parallel_workers_and_passes_the_contract(tmp_path):
    """The README's path for a new idea, outside the repository: a sweep whose joblib workers import
    the user's file, its report, and the contract test over it (about 1 min)."""
    variant = readme_variant(tmp_path)
    environment = {key: value for key, value in os.environ.items() if key != external.PLUGINS_VARIABLE}
    command = [sys.executable, "-m", "bench", "-m", "+debug=tiny", "train.steps=10", "train.eval_every=5", "task=copy", "seed=0,1",
               "variant=kerple_log", "train.lr=1e-3", f"plugins=[{variant}]", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
               "hydra.sweep.dir=sweep"]  # fmt: skip
    subprocess.run(command, cwd=tmp_path, env=environment, check=True, capture_output=True, timeout=300)
    records = [json.loads(path.read_text()) for path in sorted((tmp_path / "sweep").glob("*/result.json"))]
    assert [(r["variant"], r["status"]) for r in records] == [("kerple_log", "completed")] * 2
    assert "| kerple_log" in (tmp_path / "sweep" / "report" / "report.md").read_text()

    contract = [sys.executable, "-m", "pytest", "--pyargs", "bench.contract", "-k", "kerple_log", "-q", "-p", "no:cacheprovider"]
    done = subprocess.run(contract, cwd=tmp_path, env={**environment, external.PLUGINS_VARIABLE: str(variant)}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:]
    passed = int(re.search(r"(\d+) passed", done.stdout).group(1))
    assert passed >= 8 and "failed" not in done.stdout, "the contract ran over the user's variant"
