"""The judge's expected object count comes from the expression: the sample sidecar and ``judge --expr``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from conceptlang.cli import main
from conceptlang.cli.sample_cmds import _judge
from conceptlang.data import generate
from conceptlang.io import save_grid
from conceptlang.syntax import parse_expr

TWO = "position(0.2, 0.25) & position(0.8, 0.75)"


@pytest.fixture(scope="module")
def scenes():
    """Rendered scenes: 6 with two objects, 6 with one."""
    two, _ = generate("scenes", 6, seed=11, split="two_objects")
    one, _ = generate("scenes", 6, seed=11, split="train")
    return two, one


def test_sidecar_judge_expects_the_expressions_object_count(scenes):
    two, one = scenes
    rec = _judge("scenes", two, parse_expr(TWO))
    assert rec["expected_objects"] == 2 and rec["valid"] == [True] * 6
    assert all(len(lab["objects"]) == 2 for lab in rec["labels"])
    rec = _judge("scenes", one, parse_expr(TWO))
    assert rec["expected_objects"] == 2 and rec["valid"] == [False] * 6  # one object is not "valid" for two places
    rec = _judge("scenes", two, parse_expr("circle | square"))
    assert rec["expected_objects"] == 1 and rec["valid"] == [False] * 6
    rec = _judge("scenes", one, parse_expr("circle | square"))
    assert rec["expected_objects"] == 1 and rec["valid"] == [True] * 6
    # an OR whose branches place one and two objects allows exactly those counts
    either = parse_expr("position(0.2, 0.25) | position(0.2, 0.25) & position(0.8, 0.75)")
    assert _judge("scenes", np.concatenate([one, two]), either)["expected_objects"] == [1, 2]
    assert _judge("scenes", np.concatenate([one, two]), either)["valid"] == [True] * 12


@pytest.fixture()
def grid(scenes, tmp_path):
    path = tmp_path / "two.png"
    save_grid(path, scenes[0], scale=2)
    return path


def _judge_json(*args):
    res = CliRunner().invoke(main, ["judge", *map(str, args), "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def test_judge_expr_sets_the_count_and_reports_satisfaction(grid):
    out = _judge_json(grid, "--domain", "scenes", "--expr", "circle | square | triangle")
    assert out["expected_objects"] == 1 and [r["valid"] for r in out["images"]] == [False] * 6
    out = _judge_json(grid, "--domain", "scenes", "--expr", TWO)
    assert out["expected_objects"] == 2 and out["expression"] == TWO
    assert [r["valid"] for r in out["images"]] == [True] * 6
    assert all(isinstance(r["satisfied"], bool) for r in out["images"])
    three = "position(0.2, 0.25) & position(0.5, 0.5) & position(0.8, 0.75)"
    out = _judge_json(grid, "--domain", "scenes", "--expr", three)
    assert out["expected_objects"] == 3 and [r["valid"] for r in out["images"]] == [False] * 6
    assert out["images"][0]["reasons"][0] == "2 objects, expected 3"


def test_judge_count_defaults_to_the_sidecar_expression_then_one(grid):
    out = _judge_json(grid, "--domain", "scenes")
    assert out["expected_objects"] == 1 and not any(r["valid"] for r in out["images"])  # never "one or two"
    grid.with_suffix(".json").write_text(json.dumps({"expression": TWO, "domain": "scenes"}))
    out = _judge_json(grid)
    assert out["expected_objects"] == 2 and all(r["valid"] for r in out["images"])
    assert "satisfied" not in out["images"][0]
    out = _judge_json(grid, "--objects", "1")  # stated explicitly, the count wins over the sidecar
    assert out["expected_objects"] == 1 and not any(r["valid"] for r in out["images"])
    res = CliRunner().invoke(main, ["judge", str(grid), "--domain", "scenes"])
    assert res.exit_code == 0 and "2 object(s) expected from the sidecar's expression" in res.output.splitlines()[0]


def test_judge_objects_and_expr_together_or_a_bad_expr_are_usage_errors(grid):
    res = CliRunner().invoke(main, ["judge", str(grid), "--domain", "scenes", "--objects", "2", "--expr", TWO])
    assert res.exit_code == 2 and "give --objects or --expr, not both" in res.output
    res = CliRunner().invoke(main, ["judge", str(grid), "--domain", "scenes", "--expr", "position(0.2, 0.25) & ("])
    assert res.exit_code == 2 and "error:" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize("expr, message, caret", [
    ("position(3, 1)", "position argument x=3 is outside [0, 1]", "  ^"),
    ("circle & position(0.5, -0.25)", "position argument y=-0.25 is outside [0, 1]", "           ^"),
    ("p = position(0.5, 2); p & circle", "position argument y=2 is outside [0, 1]", "      ^"),
    ("position(0.5)", "position takes 2 argument(s) (x, y), got 1", "  ^"),
])
def test_judge_expr_arguments_are_checked_against_the_domain(grid, expr, message, caret):
    """``--expr`` arguments off the canvas are a usage error at the concept, as ``sample`` says."""
    res = CliRunner().invoke(main, ["judge", str(grid), "--domain", "scenes", "--expr", expr])
    assert res.exit_code == 2 and "Traceback" not in res.output
    lines = res.output.splitlines()
    assert lines[0] == f"error: {message}"
    assert lines[-1].rstrip() == caret
