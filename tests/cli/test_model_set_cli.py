"""``conceptlang sample`` / ``explain`` with the shipped models: which model set, why, and --strict.

Two sampler steps on two chains keep these to seconds; they check the wiring (sidecar fields, the
images of one-object expressions), not sample quality.
"""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from conceptlang.cli import main
from conceptlang.resources import shipped_models_dir

SHIPPED = shipped_models_dir()
TWO = "position(0.2, 0.25) & position(0.8, 0.75)"
THREE = "position(0.25, 0.25) & position(0.75, 0.25) & position(0.5, 0.75)"


@pytest.fixture()
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CONCEPTLANG_MODELS", raising=False)

    def _run(*args):
        return CliRunner().invoke(main, list(args))

    return _run


def _sample(run, expr, out, *extra):
    res = run("sample", expr, "-n", "2", "--steps", "2", "--seed", "3", "--device", "cpu", "--no-progress",
              "-o", str(out), *extra)
    return res, (json.loads(out.with_suffix(".json").read_text()) if res.exit_code == 0 else None)


def test_two_positions_sample_with_the_objects_set_and_say_why(run, tmp_path):
    res, rec = _sample(run, TWO, tmp_path / "two.png")
    assert res.exit_code == 0, res.output
    assert [m["name"] for m in rec["models"]] == ["objects-joint"]
    assert rec["model_set"]["name"] == "objects" and "places 2 objects" in rec["model_set"]["reason"]
    assert rec["graph"]["model_set"] == rec["model_set"] and rec["warnings"] == []
    assert rec["judge"]["expected_objects"] == 2 and len(rec["judge"]["valid"]) == 2
    res = run("explain", TWO)
    assert res.exit_code == 0 and "model set: objects (" in res.output and "models: objects-joint" in res.output


def test_one_object_expressions_give_the_same_images_as_without_model_sets(run, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    data = json.loads((SHIPPED / "manifest.json").read_text())
    data.pop("model_sets")
    (plain / "manifest.json").write_text(json.dumps(data))
    for e in data["models"]:
        shutil.copyfile(SHIPPED / e["file"], plain / e["file"])
    for expr in ("circle & red", "position(0.2, 0.25) | position(0.8, 0.75)"):
        res, rec = _sample(run, expr, tmp_path / "a.png")
        assert res.exit_code == 0, res.output
        res, alone = _sample(run, expr, tmp_path / "b.png", "--models", str(plain))
        assert res.exit_code == 0, res.output
        assert rec["model_set"] is None and [m["name"] for m in rec["models"]] == ["scenes-joint"]
        assert rec["image_sha256"] == alone["image_sha256"]
        assert rec["judge"]["expected_objects"] == 1


def test_three_positions_warn_and_strict_refuses_without_writing(run, tmp_path):
    res, rec = _sample(run, THREE, tmp_path / "three.png")
    assert res.exit_code == 0, res.output
    assert "warning: the expression places 3 objects" in res.output
    assert rec["warnings"][0].startswith("the expression places 3 objects") and rec["judge"]["expected_objects"] == 3
    assert rec["model_set"]["name"] == "objects"
    res, _ = _sample(run, THREE, tmp_path / "strict.png", "--strict")
    assert res.exit_code == 1 and "error: the expression places 3 objects" in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "strict.png").exists() and not (tmp_path / "strict.json").exists()


def test_a_one_object_models_folder_warns_and_names_the_objects_set(run, tmp_path):
    res = run("explain", TWO, "--models", str(SHIPPED / "continual"))
    assert res.exit_code == 0
    assert "warning: the expression places 2 objects" in res.output
    assert "model set 'objects'" in res.output and "--models" in res.output
    res = run("explain", TWO, "--models", str(SHIPPED / "continual"), "--strict")
    assert res.exit_code == 1 and "error: the expression places 2 objects" in res.output
