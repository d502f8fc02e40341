from pathlib import Path

import numpy as np

from conceptlang.evaluation.objects import evaluate_layout, judge_layout, layout_expression, markdown_table, matches_targets
from conceptlang.evaluation.run import JudgeCache
from tests.evaluation.fakes import PixelJudge, install_fake_pipeline

T = ((0.25, 0.3), (0.75, 0.7))


def test_matches_targets_in_any_order_within_tolerance():
    assert matches_targets([{"x": 0.75, "y": 0.7}, {"x": 0.25, "y": 0.3}], T)
    assert matches_targets([{"x": 0.25 + 0.0999, "y": 0.3}, {"x": 0.75, "y": 0.7}], T)
    assert not matches_targets([{"x": 0.25 + 0.1001, "y": 0.3}, {"x": 0.75, "y": 0.7}], T)
    # both objects near the same target: no one-to-one assignment
    assert not matches_targets([{"x": 0.25, "y": 0.3}, {"x": 0.26, "y": 0.31}], T)
    assert not matches_targets([{"x": 0.25, "y": 0.3}], T)
    assert not matches_targets([{"x": 0.25, "y": 0.3}, {"x": 0.75, "y": 0.7}, {"x": 0.5, "y": 0.5}], T)


def test_judge_layout_counts():
    labels = [
        {"objects": [{"x": 0.25, "y": 0.3}, {"x": 0.75, "y": 0.7}]},
        {"objects": [{"x": 0.25, "y": 0.3}, {"x": 0.75, "y": 0.7}]},  # invalid
        {"objects": [{"x": 0.25, "y": 0.3}]},
        {"objects": [{"x": 0.5, "y": 0.5}, {"x": 0.75, "y": 0.7}]},
        {"objects": [{"x": 0.1, "y": 0.1}] * 5},
    ]
    valid = np.array([True, False, True, True, True])
    ok, exact, hist = judge_layout(labels, valid, T)
    assert ok.tolist() == [True, False, False, False, False]
    assert exact.tolist() == [True, True, False, True, False]
    assert hist == {"1": 1, "2": 3, "4+": 1}


def test_layout_expression():
    assert layout_expression(T) == "position(0.25, 0.3) & position(0.75, 0.7)"


def test_evaluate_layout_end_to_end(monkeypatch, tmp_path):
    # PixelJudge puts its objects at (0.25, 0.5) and (0.75, 0.5); the first 3 of 8 samples are invalid.
    plan = lambda text, n: [(0, 0, 1)] * 3 + [(0, 0, 0)] * (n - 3)  # noqa: E731
    install_fake_pipeline(monkeypatch, plan=plan, objects=2)
    r = evaluate_layout(((0.25, 0.5), (0.75, 0.5)), None, n=8, judges=JudgeCache(lambda d: PixelJudge()),
                        grid_path=tmp_path / "o.png")
    assert (r.accuracy.successes, r.valid.successes, r.exactly_two.successes) == (5, 5, 8)
    assert r.object_counts == {"2": 8}
    assert (tmp_path / "o.png").exists()
    assert "**0.62 [0.31, 0.86]**" in markdown_table([r])


def test_objects_registry_prefers_the_object_level_set(tmp_path, monkeypatch):
    import conceptlang.models.registry as R
    from conceptlang.evaluation.objects import objects_models_dir, objects_registry

    monkeypatch.setattr(R, "load_registry", lambda d: ("registry", Path(d)))
    # no object-level set: the folder itself
    assert objects_registry(tmp_path) == (("registry", tmp_path), tmp_path)
    (tmp_path / "objects").mkdir()
    assert objects_registry(tmp_path)[1] == tmp_path  # a folder without a manifest is not a set
    (tmp_path / "objects" / "manifest.json").write_text("{}")
    assert objects_registry(tmp_path) == (("registry", tmp_path / "objects"), tmp_path / "objects")
    # the default follows $CONCEPTLANG_MODELS
    monkeypatch.setenv("CONCEPTLANG_MODELS", str(tmp_path))
    assert objects_models_dir() == tmp_path / "objects"
    assert objects_registry()[1] == tmp_path / "objects"


def test_shipped_object_level_set_is_a_scenes_model_with_position():
    from conceptlang.evaluation.objects import objects_models_dir, objects_registry
    from conceptlang.resources import shipped_models_dir

    assert objects_models_dir(shipped_models_dir()) == shipped_models_dir() / "objects"
    reg, where = objects_registry(shipped_models_dir())
    assert where == shipped_models_dir() / "objects"
    entries = {e["name"]: e for e in reg.describe()}
    assert set(entries) == {"objects-joint"}
    e = entries["objects-joint"]
    assert e["domain"] == "scenes" and "position" in e["families"]
    # trained on one- and two-object scenes, so a position names one object among possibly two
    assert set(e["training"]["split"]) == {"train", "two_objects"}
