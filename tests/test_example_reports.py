"""The committed example reports are complete: every job finished, no cell left running, missing or
nan, every figure present; and the README links each one."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(path for path in (REPO / "reports").glob("*/report.md"))


def test_there_are_example_reports_and_the_readme_links_each():
    readme = (REPO / "README.md").read_text()
    assert EXAMPLES
    for report in EXAMPLES:
        assert f"reports/{report.parent.name}/report.md" in readme


@pytest.mark.parametrize("report", EXAMPLES, ids=lambda path: path.parent.name)
def test_an_example_report_has_no_missing_running_or_nan_cell(report):
    text = report.read_text()
    assert "## Missing jobs" not in text
    if text.startswith(f"# Report {report.parent.name}, its saved runs re-rendered"):
        # re-rendered from its tables (python -m bench.report --baseline NAME): no sweep to count the jobs it
        # asked for, so every saved run must have ended (the status check below) rather than none be missing
        counts = re.search(r"\d+ runs from saved tables: (.*)\.", text).group(1)
        assert {status.split()[1] for status in counts.split(", ")} <= {"completed", "diverged", "failed"}, counts
    else:
        assert re.search(r"asked for \d+ jobs; 0 have no result yet", text)
    assert not re.search(r"\|\s*nan\s*\|", text, re.IGNORECASE), "a nan cell"
    assert not re.search(r"\|\s*(running|killed|unreadable)\s*\|", text), "a run that did not finish"
    page = (report.parent / "report.html").read_text()
    for number in re.findall(r"\(report.html#figure-(\d+)\)", text):
        assert f"<figure id='figure-{number}'>" in page, f"figure {number}"
