"""Files the project reads are parsed, never executed: every torch.load passes weights_only=True,
and no package module unpickles or evaluates text."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MODULES = sorted(p for package in ("bench", "variants", "tasks", "analyses", "plugin") for p in (REPO / package).rglob("*.py"))
UNSAFE_CALLS = {"pickle.load", "pickle.loads", "eval", "exec", "yaml.load", "numpy.load", "np.load"}


def called_name(call: ast.Call) -> str:
    return ast.unparse(call.func)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_loading_is_safe(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        name = called_name(node)
        assert name not in UNSAFE_CALLS, f"{path.name}:{node.lineno} calls {name}"
        if name == "torch.load":
            keywords = {k.arg: k.value for k in node.keywords}
            assert isinstance(keywords.get("weights_only"), ast.Constant) and keywords["weights_only"].value is True, (
                f"{path.name}:{node.lineno}: torch.load without weights_only=True"
            )


def test_the_scan_sees_the_project():
    assert {p.name for p in MODULES} >= {"job.py", "build.py", "standard.py", "induction.py", "head_scores.py", "measure.py"}
