"""The examples run end to end on the shipped models within a minute each (slow: run with -m slow)."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((ROOT / "examples").glob("*.py"))


def test_every_example_is_listed():
    assert {p.name for p in SCRIPTS} >= {"design_card.py", "scenes_compositions.py", "infer_concepts.py", "object_composition.py"}


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_example_runs_under_a_minute(script, tmp_path):
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    took = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr[-2000:]
    assert "failed" not in r.stdout
    assert took < 60, f"{script.name} took {took:.0f} s"
