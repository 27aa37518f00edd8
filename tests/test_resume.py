"""Resuming: a job whose result.json completed for the same config is skipped; failed ones run
again only when asked; unfinished ones always run again; stale half-written files are removed."""
from __future__ import annotations

import json

from hydra import compose, initialize_config_dir

from bench.app import run
from bench.config import CONF_DIR, CONFIG_NAME, RUN_CONTROL_KEYS
from bench.report import load_results
from bench.results import write_json_atomic

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
        patch.setattr("bench.app.train", out_of_memory)
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
