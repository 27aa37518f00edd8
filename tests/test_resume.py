"""Resuming: a job whose result.json completed for the same config and the same code that makes
its numbers is skipped; failed ones run again only when asked; unfinished ones always run again;
stale half-written files are removed."""
from __future__ import annotations

import ast
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hydra import compose, initialize_config_dir

import bench.core.config
import bench.core.job
import bench.core.train
import bench.report.records
from bench.core.job import identity, run
from bench import CONF_DIR, CONFIG_NAME
from bench.core.config import RUN_CONTROL_KEYS, register_configs
from bench.report.records import load_results
from bench.core.results import working_tree_dirty, write_json_atomic
from variants import VARIANTS

QUICK = ("train.steps=20", "train.eval_every=10")


def finished_at(directory):
    return json.loads((directory / "result.json").read_text())["finished_at"]


def test_a_completed_job_is_skipped_unless_its_config_changed(make_config, tiny, tmp_path):
    first = run(make_config(*tiny, *QUICK), tmp_path, single_run=False, overrides=[])
    again = run(make_config(*tiny, *QUICK, "train.progress=true", "train.num_threads=1"), tmp_path, single_run=False, overrides=[])
    assert again == first and finished_at(tmp_path) == first["finished_at"]
    not_resumed = run(make_config(*tiny, *QUICK, "resume=false"), tmp_path, single_run=False, overrides=[])
    assert not_resumed["finished_at"] != first["finished_at"]
    changed = run(make_config(*tiny, *QUICK, "train.lr=0.001"), tmp_path, single_run=False, overrides=[])
    assert changed["config_hash"] != first["config_hash"] and changed["config"]["train"]["lr"] == 0.001


def test_failed_jobs_run_again_only_when_asked(make_config, tiny, tmp_path, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise MemoryError("simulated")

    with monkeypatch.context() as patch:
        patch.setattr("bench.core.job.train", out_of_memory)
        failed = run(make_config(*tiny, *QUICK), tmp_path, single_run=False, overrides=[])
    assert failed["status"] == "failed"
    assert run(make_config(*tiny, *QUICK), tmp_path, single_run=False, overrides=[]) == failed
    rerun = run(make_config(*tiny, *QUICK, "rerun_failed=true"), tmp_path, single_run=False, overrides=[])
    assert rerun["status"] == "completed"


def test_an_unfinished_job_runs_again_and_stale_temporaries_go(make_config, tiny, tmp_path):
    cfg = make_config(*tiny, *QUICK)
    killed = run(cfg, tmp_path, single_run=False, overrides=[]) | {"status": "running"}
    killed.pop("metrics")
    write_json_atomic(tmp_path / "result.json", killed)
    (tmp_path / ".result.json.12345.tmp").write_text('{"status": "compl')
    record = run(cfg, tmp_path, single_run=False, overrides=[])
    assert record["status"] == "completed" and "metrics" in record
    assert not list(tmp_path.glob(".*.tmp"))


def test_run_control_keys_stay_out_of_job_directory_names():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        hydra = compose(CONFIG_NAME, return_hydra_config=True).hydra
    assert sorted(hydra.job.config.override_dirname.exclude_keys) == sorted(RUN_CONTROL_KEYS)


def test_a_config_reported_twice_counts_once(make_config, tiny, tmp_path):
    cfg = make_config(*tiny, *QUICK)
    run(cfg, tmp_path / "first", single_run=False, overrides=[])
    run(cfg, tmp_path / "copy_of_it", single_run=False, overrides=[])
    results = load_results(tmp_path)
    runs, curves = results.runs, results.curves
    assert len(runs) == 1 and runs["run"].tolist() == ["copy_of_it"]
    assert set(curves["run"]) == {"copy_of_it"}


EDITABLE_VARIANT = '''
from variants.standard import StandardAttention


class Edited(StandardAttention):
    name = "edited_for_the_resume_test"
'''


@pytest.fixture
def editable_variant(tmp_path):
    """A variant in a file of its own that the test can edit, registered for the test only."""
    path = tmp_path / "edited.py"
    path.write_text(EDITABLE_VARIANT)
    spec = importlib.util.spec_from_file_location("variants.edited_for_the_resume_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    register_configs()
    yield path
    del VARIANTS["edited_for_the_resume_test"], sys.modules[spec.name]
    register_configs()


def test_editing_a_variants_code_re_runs_its_jobs_and_keeps_the_others(make_config, tiny, tmp_path, editable_variant):
    jobs = {variant: make_config(*tiny, *QUICK, f"variant={variant}") for variant in ("edited_for_the_resume_test", "standard")}
    first = {variant: run(cfg, tmp_path / variant, single_run=False, overrides=[]) for variant, cfg in jobs.items()}
    editable_variant.write_text(EDITABLE_VARIANT + "    # a comment, which changes no code\n")
    assert {variant: run(cfg, tmp_path / variant, single_run=False, overrides=[]) for variant, cfg in jobs.items()} == first
    editable_variant.write_text(EDITABLE_VARIANT + "    is_edited = True  # a change to the variant's code\n")
    second = {variant: run(cfg, tmp_path / variant, single_run=False, overrides=[]) for variant, cfg in jobs.items()}
    assert second["standard"] == first["standard"], "untouched code: skipped"
    edited_before, edited_after = first["edited_for_the_resume_test"], second["edited_for_the_resume_test"]
    assert edited_after["finished_at"] != edited_before["finished_at"], "edited code: run again"
    assert edited_after["config_hash"] == edited_before["config_hash"] and edited_after["code"]["variants"] != edited_before["code"]["variants"]
    assert edited_after["code"]["core"] == edited_before["code"]["core"] and edited_after["code"]["tasks"] == edited_before["code"]["tasks"]


def test_an_untracked_file_makes_the_checkout_dirty(tmp_path):
    def git(*arguments):
        subprocess.run(["git", *arguments], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "tracked.py").write_text("x = 1\n")
    git("add", "tracked.py")
    git("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "one file")
    assert working_tree_dirty(tmp_path) is False
    (tmp_path / "new_variant.py").write_text("y = 2\n")
    assert working_tree_dirty(tmp_path) is True
    assert working_tree_dirty(tmp_path.parent / "not_a_checkout_at_all") is None


def test_a_changed_analysis_is_run_again_from_the_saved_weights_without_training(make_config, tiny, tmp_path):
    first = run(make_config(*tiny, *QUICK), tmp_path, single_run=False, overrides=[])
    outputs = {path.name: path.stat().st_mtime_ns for path in (tmp_path / "analyses").iterdir()}
    again = run(make_config(*tiny, *QUICK, "analysis.head_scores.probe_sequences=4"), tmp_path, single_run=False, overrides=[])
    assert again == first, "training is not repeated for an analysis option"
    changed = {name for name, mtime in outputs.items() if (tmp_path / "analyses" / name).stat().st_mtime_ns != mtime}
    assert changed == {"head_scores.json"}
    head_scores = json.loads((tmp_path / "analyses" / "head_scores.json").read_text())
    assert head_scores["identity"]["options"] == {"probe_sequences": 4}


@pytest.fixture
def editable_copy(tmp_path, monkeypatch):
    """Point a loaded module at a copy of its file, for the test to edit: the code identity reads the
    copy, and no file of the checkout (which others may be editing) is touched."""

    def copy(module: ModuleType) -> Path:
        path = tmp_path / "sources" / module.__name__ / Path(module.__file__).name
        path.parent.mkdir(parents=True)
        shutil.copy(module.__file__, path)
        monkeypatch.setattr(module, "__file__", str(path))
        return path

    return copy


def replace_once(path: Path, old: str, new: str) -> None:
    source = path.read_text()
    assert source.count(old) == 1, f"{old!r} is not in {path.name} exactly once"
    path.write_text(source.replace(old, new))


def add_statement(path: Path, function: str, statement: str) -> None:
    """Add `statement` as the first statement after the docstring of top-level `function`."""
    source = path.read_text()
    definition = next(node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef) and node.name == function)
    first = definition.body[1] if ast.get_docstring(definition) is not None else definition.body[0]
    lines = source.splitlines(keepends=True)
    lines.insert(first.lineno - 1, " " * first.col_offset + statement + "\n")
    path.write_text("".join(lines))


def test_resume_re_trains_for_the_code_that_makes_the_numbers_and_for_nothing_else(make_config, tiny, tmp_path, editable_copy):
    job_code, training_code, report_code = (editable_copy(module) for module in (bench.core.job, bench.core.train, bench.report.records))
    jobs = {task: make_config(*tiny, *QUICK, f"task={task}") for task in ("copy", "induction")}

    def sweep() -> dict[str, str]:
        """Each job's finished_at: unchanged where resuming skipped it."""
        return {task: run(cfg, tmp_path / "sweep" / task, single_run=False, overrides=[])["finished_at"] for task, cfg in jobs.items()}

    trained = sweep()
    replace_once(job_code, '"job failed: %s"', '"the job failed: %s"')
    report_code.write_text(report_code.read_text() + '\nREPORT_TITLE = "an edited report module"\n')
    assert sweep() == trained, "a log message and a report module make no number: nothing re-trained"

    training_source = training_code.read_text()
    assert training_source.startswith('"""')
    training_code.write_text('"""An edited docstring. ' + training_source[3:].replace("\ndef ", "\n# an added comment\ndef ", 1))
    assert sweep() == trained, "a comment and a docstring make no number: nothing re-trained"

    add_statement(training_code, "train", "edited = True")
    re_trained = sweep()
    assert all(re_trained[task] != trained[task] for task in jobs), "the training loop makes every job's numbers: all re-trained"


def test_building_the_model_counts_as_code_that_makes_the_numbers_and_the_configs_messages_do_not(make_config, tiny, editable_copy):
    cfg = make_config(*tiny)
    config_code, before = editable_copy(bench.core.config), identity(cfg)["code"]
    replace_once(config_code, "is not a finite number", "is not a finite number, edited")
    assert identity(cfg)["code"] == before, "a validation message makes no number"
    add_statement(config_code, "build_model", "edited = True")
    after = identity(cfg)["code"]
    assert after["core"] != before["core"] and after["variants"] == before["variants"] and after["tasks"] == before["tasks"]
