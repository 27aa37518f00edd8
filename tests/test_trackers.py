"""Experiment trackers (bench/trackers.py), each read back with its own reader and no network: a
tiny job's curve, config and final metrics, grouped per sweep as each tool groups runs."""
from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest

from bench import ConfigError
from bench.core.job import run
from bench.trackers import log_job

TINY = ("+debug=tiny", "train.steps=20", "train.eval_every=10", "train.eval_batches=1", "task=copy", "variant=standard")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[dict, Path]:
    """One tiny job's record (without a tracker) and its sweep directory."""
    from bench.core.config import compose_config

    sweep = tmp_path_factory.mktemp("trackers") / "sweep"
    return run(compose_config([*TINY, "seed=0"]), sweep / "seed=0", single_run=False, overrides=[]), sweep


def send_to(logger: str, finished: tuple[dict, Path], jobs=("seed=0",)) -> Path:
    """The finished job's record sent to the tracker as each of `jobs` of its sweep; the sweep."""
    from bench.core.config import compose_config

    record, sweep = finished
    for job in jobs:
        log_job(compose_config([f"logger={logger}"]).logger, record, sweep / job, sweep)
    return sweep


def curve_of(record: dict, key: str) -> list[tuple[int, float]]:
    return [(point["step"], point[key]) for point in record["curve"] if key in point]


def assert_same_curve(logged: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    assert [step for step, _ in logged] == [step for step, _ in expected] and len(expected) >= 2
    assert [value for _, value in logged] == pytest.approx([value for _, value in expected], rel=1e-6)


def test_tensorboard_gets_one_run_directory_per_job_with_its_curve_config_and_final_metrics(make_config, tmp_path):
    """Through the job itself, logger=tensorboard on the command line."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sweep = tmp_path / "sweep"
    record = run(make_config(*TINY, "logger=tensorboard", "seed=0"), sweep / "seed=0", single_run=False, overrides=[])
    events = EventAccumulator(str(sweep / "tensorboard" / "seed=0"))
    events.Reload()
    logged = [(event.step, event.value) for event in events.Scalars("validation/accuracy")]
    assert_same_curve(logged, curve_of(record, "validation_accuracy"))
    assert events.Scalars("final/test_accuracy")[0].value == pytest.approx(record["metrics"]["test"]["accuracy"])
    assert "config/text_summary" in events.Tags()["tensors"]


def test_mlflow_gets_an_experiment_per_sweep_and_a_run_per_job(finished, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    sweep = send_to("mlflow", finished, jobs=("seed=0", "seed=1"))
    record = finished[0]
    client = MlflowClient(tracking_uri=f"file:{sweep / 'mlruns'}")
    experiment = client.get_experiment_by_name("sweep")
    runs = {run_.info.run_name: run_ for run_ in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["seed=0", "seed=1"], "one run per job, in the sweep's experiment"
    for job in runs.values():
        history = [(metric.step, metric.value) for metric in client.get_metric_history(job.info.run_id, "validation/accuracy")]
        assert_same_curve(sorted(history), curve_of(record, "validation_accuracy"))
        assert job.data.metrics["final_test_accuracy"] == pytest.approx(record["metrics"]["test"]["accuracy"])
        assert job.data.params["seed"] == "0" and job.data.params["train.lr"] == str(record["config"]["train"]["lr"])
        assert job.info.status == "FINISHED"


def wandb_records(path: Path) -> list[bytes]:
    """The records of a W&B run file (the LevelDB log format: 7-byte header, 32 KiB blocks of
    checksum, length, type chunks; a record is one full chunk or first ... last)."""
    data, position, records, pending = path.read_bytes(), 7, [], b""
    while position + 7 <= len(data):
        left = 32768 - position % 32768
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if left < 7 or (length == 0 and kind == 0):
            position += left
            continue
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # full, last
            records.append(pending)
            pending = b""
    return records


def test_wandb_offline_gets_a_run_per_job_in_the_sweeps_group(finished):
    from wandb.proto import wandb_internal_pb2

    sweep, record = send_to("wandb", finished), finished[0]
    (run_file,) = (sweep / "wandb").glob("offline-run-*/run-*.wandb")
    records = []
    for _ in range(300):  # W&B's service process may still be writing after run.finish(): its last record is the run's exit
        records = [wandb_internal_pb2.Record.FromString(raw) for raw in wandb_records(run_file)]
        if any(parsed.WhichOneof("record_type") == "exit" for parsed in records):
            break
        time.sleep(0.1)
    history, summary, run_record = [], {}, None
    for parsed in records:
        kind = parsed.WhichOneof("record_type")
        if kind == "history":
            history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in parsed.history.item})
        elif kind == "summary":
            summary.update({item.key or "/".join(item.nested_key): item.value_json for item in parsed.summary.update})
        elif kind == "run":
            run_record = parsed.run
    logged = [(row["_step"], row["validation/accuracy"]) for row in history if "validation/accuracy" in row]
    assert_same_curve(logged, curve_of(record, "validation_accuracy"))
    assert json.loads(summary["final/test_accuracy"]) == pytest.approx(record["metrics"]["test"]["accuracy"])
    assert run_record.run_group == "sweep" and run_record.display_name == "seed=0"
    config = {item.key: json.loads(item.value_json) for item in run_record.config.update}
    assert config["train"]["lr"] == record["config"]["train"]["lr"]


def test_a_tracker_whose_package_is_missing_names_the_extra(monkeypatch, make_config):
    import bench.trackers

    monkeypatch.setattr(bench.trackers.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"^logger=wandb needs the wandb package; install it with: pip install 'attention-bench\[wandb\]'$"):
        bench.trackers.check_logger(make_config("logger=wandb").logger)
