"""An analysis that breaks, wherever it breaks (deciding whether it applies, measuring, or storing
what it measured), is recorded as failed with its error: the trained run stays completed and the
analyses after it still run."""
from __future__ import annotations

import json

import pytest

from analyses import ANALYSES, Analysis, Measurement, TrainedRun
from bench.core.config import register_configs
from bench.core.job import run
from bench.core.measure import ANALYSIS_DIR, CURRENT

BROKEN = "broken_for_the_failure_test"
QUICK = ("train.steps=10", "train.eval_every=10", "analysis.length_generalisation.factors=[1]")


@pytest.fixture
def broken_analysis():
    """An analysis that raises in the hook its `breaks_in` option names, registered for the test only,
    first in order, so that every other analysis runs after it."""

    class Broken(Analysis):
        name = BROKEN
        title = "An analysis that breaks"

        def __init__(self, *, breaks_in: str = "applies") -> None:
            self.breaks_in = breaks_in

        def applies(self, run: TrainedRun) -> str | None:
            if self.breaks_in == "applies":
                raise RuntimeError("broken in applies")
            return None

        def measure(self, run: TrainedRun) -> Measurement:
            if self.breaks_in == "measure":
                raise RuntimeError("broken in measure")
            return Measurement(rows=[{("a", "tuple"): "a key JSON cannot hold"}])

    others = {name: cls for name, cls in ANALYSES.items() if name != BROKEN}
    ANALYSES.clear()
    ANALYSES.update({BROKEN: Broken, **others})
    register_configs()
    yield
    del ANALYSES[BROKEN]
    register_configs()


@pytest.mark.parametrize(
    ("breaks_in", "error"),
    [("applies", "RuntimeError: broken in applies"), ("measure", "RuntimeError: broken in measure"), ("storing", "TypeError: keys must be")],
)
def test_a_broken_analysis_fails_alone_and_the_trained_run_stands(make_config, tiny, tmp_path, broken_analysis, breaks_in, error):
    record = run(make_config(*tiny, *QUICK, f"analysis.{BROKEN}.breaks_in={breaks_in}"), tmp_path, single_run=False, overrides=[])
    assert record["status"] == "completed" and "metrics" in record
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "completed"
    assert record["analyses"][BROKEN] == "failed"
    output = json.loads((tmp_path / ANALYSIS_DIR / f"{BROKEN}.json").read_text())
    assert output["status"] == "failed" and output["error"].startswith(error)
    others = {name: status for name, status in record["analyses"].items() if name != BROKEN}
    assert set(others) == set(ANALYSES) - {BROKEN} and all(status in CURRENT for status in others.values()), others
