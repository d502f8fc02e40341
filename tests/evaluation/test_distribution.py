"""Distribution metrics: exact answers on hand-built sets, then generator data through the real judge."""

import json

import numpy as np
import pytest

from conceptlang.data import generate
from conceptlang.evaluation import distribution as D
from conceptlang.evaluation.suites import parse_entry_text
from conceptlang.syntax import evaluate

# ---- numerics ---------------------------------------------------------------------------------


def test_tv_on_known_histograms():
    assert D.tv_distance({"a": 0.5, "b": 0.5}, {"a": 1.0}) == 0.5
    assert D.tv_distance({"a": 1.0}, {"b": 1.0}) == 1.0
    assert D.tv_distance({"a": 0.2, "b": 0.3, "c": 0.5}, {"a": 0.2, "b": 0.3, "c": 0.5}) == 0.0
    assert D.tv_distance({"a": 0.7, "b": 0.3}, {"a": 0.4, "b": 0.2, "c": 0.4}) == pytest.approx(0.4)
    assert D.histogram(["x", "y", "x", "x"]) == {"x": 0.75, "y": 0.25}
    assert D.histogram([]) == {}


def test_knn_radii_and_precision_recall_on_a_line():
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    # 3rd-nearest distances: 0 → {1, 2, 3}: 3; 1 → {1, 1, 2}: 2; 2 → 2; 3 → 3
    assert D.knn_radii(real, 3).tolist() == [3.0, 2.0, 2.0, 3.0]
    fake = np.array([[5.0], [6.5], [-2.5], [100.0]])
    # 5 lies in the ball of 3 (|5 - 3| = 2 ≤ 3); -2.5 in the ball of 0 (2.5 ≤ 3); 6.5 and 100 in none
    # fake radii: 5 → 95, 6.5 → 93.5, -2.5 → 102.5, 100 → 102.5: every real point lies within 95 of 5
    assert D.precision_recall(real, fake, 3) == (0.5, 1.0)
    # two far-apart clusters of fakes: radii 1 around {10, 11, 12, 13}, none near the real points
    far = np.array([[10.0], [11.0], [12.0], [13.0], [-40.0], [-41.0], [-42.0], [-43.0]])
    assert D.knn_radii(far, 3).tolist() == [3.0, 2.0, 2.0, 3.0, 3.0, 2.0, 2.0, 3.0]
    assert D.precision_recall(real, far, 3) == (0.0, 0.0)
    assert D.precision_recall(real, real, 3) == (1.0, 1.0)
    with pytest.raises(ValueError, match="more than k = 3"):
        D.knn_radii(real[:3], 3)


def test_feature_scale_is_the_root_mean_square_of_the_reference_features():
    assert D.feature_scale(np.array([[3.0, 4.0], [0.0, 0.0]])) == 2.5  # sqrt((9 + 16 + 0 + 0) / 4)
    assert D.feature_scale(np.zeros((4, 3))) == 1.0  # all zero: no scaling


def test_kid_unbiased_estimator_known_values():
    x = np.array([[0.0], [1.0]])
    # k(a, b) = (ab + 1)^3: k(0,0) = k(0,1) = 1, k(1,1) = 8. Off-diagonal means 1 and 1; cross mean 11/4.
    assert D.kid(x, x) == pytest.approx(1 + 1 - 2 * 11 / 4)
    same = np.ones((3, 2))
    assert D.kid(same, same) == pytest.approx(0.0)
    y = np.array([[2.0], [0.0]])
    # yy off-diagonal: k(2,0) = 1; xy: k(0,2)=1, k(0,0)=1, k(1,2)=27, k(1,0)=1 → mean 30/4
    assert D.kid(x, y) == pytest.approx(1 + 1 - 2 * 30 / 4)
    with pytest.raises(ValueError, match="same d"):
        D.kid(np.zeros((3, 2)), np.zeros((3, 3)))


def test_near_duplicates_by_rms_pixel_distance():
    imgs = np.zeros((3, 4, 4, 3), np.uint8)
    imgs[1] += 2  # RMS 2/255 ≈ 0.0078 from image 0: a near-duplicate at the 0.01 threshold
    imgs[2] += 100
    assert D.near_duplicate_mask(imgs).tolist() == [True, True, False]
    assert D.near_duplicate_rate(imgs) == pytest.approx(2 / 3)
    imgs[1] = 3  # RMS 3/255 ≈ 0.0118: no longer
    assert D.near_duplicate_rate(imgs) == 0.0
    assert D.near_duplicate_rate(imgs, threshold=0.012) == pytest.approx(2 / 3)
    assert D.near_duplicate_rate(imgs[:1]) == 0.0


# ---- families and fidelity ---------------------------------------------------------------------


def test_family_values_of_both_domains():
    _, scenes = generate("scenes", 1, seed=3)
    o = scenes[0]["objects"][0]
    v = D.family_values("scenes", scenes[0])
    assert (v["shape"], v["color"], v["size"]) == (o["shape"], o["color"], o["size"])
    assert D.family_values("scenes", {"objects": [{"x": 0.1, "y": 0.9, "shape": "circle", "color": "red",
                                                   "size": "small"}]})["position"] == "bottom-left"
    assert D._position_bin(0.5, 0.34) == "middle-centre" and D._position_bin(1.0, 0.0) == "top-right"
    assert D.family_values("scenes", {"objects": []}) is None
    _, faces = generate("faces", 1, seed=3)
    f = D.family_values("faces", faces[0])
    assert set(f) == {"hair", "male", "smiling", "eyeglasses", "young"}
    assert f["male"] == ("male" if faces[0]["male"] else "~male")
    assert f["hair"] == faces[0]["objects"][0]["hair"]


def _scene(shape, color, size="small", x=0.5, y=0.5):
    return {"objects": [{"shape": shape, "color": color, "size": size, "x": x, "y": y}]}


def test_fidelity_is_tv_per_open_family_with_its_floor():
    expr = parse_entry_text("circle & ~red")
    ref = [_scene("circle", c) for c in ("green", "blue")] * 10  # colour 50/50; shape, size, position fixed
    samples = [_scene("circle", "green")] * 3 + [_scene("circle", "blue")]
    floor = [_scene("circle", "green"), _scene("circle", "blue")]
    fid = D.fidelity("scenes", expr, samples, ref, floor)
    assert [f.family for f in fid] == ["color"]  # one value only: shape, size and position are not open
    assert fid[0].tv == pytest.approx(0.25) and fid[0].floor == 0.0
    assert fid[0].samples == {"green": 0.75, "blue": 0.25} and fid[0].reference == {"green": 0.5, "blue": 0.5}
    # position is open in the reference, but left out where the expression names one
    spread = [_scene("circle", "green", x=x) for x in (0.1, 0.9)]
    assert [f.family for f in D.fidelity("scenes", expr, samples, spread, [])] == ["position"]
    assert D.fidelity("scenes", parse_entry_text("circle & position(0.5, 0.5)"), samples, spread, []) == []


def test_two_object_fidelity_counts_every_object_once():
    expr = parse_entry_text("position(0.25, 0.5) & position(0.75, 0.5)")

    def two(a, b):
        return {"objects": [dict(a, size="small", x=0.25, y=0.5), dict(b, size="small", x=0.75, y=0.5)]}

    ref = [two({"shape": "circle", "color": "red"}, {"shape": "square", "color": "red"})] * 5
    samples = [two({"shape": "circle", "color": "red"}, {"shape": "circle", "color": "blue"})]
    fid = D.fidelity("scenes", expr, samples, ref, [], n_objects=2)
    # reference objects: circle 1/2, square 1/2, all red; samples: 2 circles, red 1/2, blue 1/2
    assert {f.family: f.tv for f in fid} == {"shape": pytest.approx(0.5)}  # colour has one reference value
    assert fid[0].samples == {"circle": 1.0} and fid[0].reference == {"circle": 0.5, "square": 0.5}
    assert D.object_family_values("scenes", samples[0], 1) is None  # two objects where one was asked for
    assert D.fidelity("scenes", expr, samples, ref, []) == []  # one-object reading: nothing to compare


def test_two_object_reference_keeps_the_layouts_that_hold():
    from conceptlang.evaluation.objects import matches_targets

    targets = ((0.25, 0.3), (0.75, 0.7))
    expr = parse_entry_text("position(0.25, 0.3) & position(0.75, 0.7)")
    ref = D.reference_for(expr, "scenes", n_images=4, seed=3, n_labels=200, split="two_objects",
                          holds=lambda lab: matches_targets(lab["objects"], targets))
    assert len(ref.labels) >= 200 and ref.images.shape == (4, 32, 32, 3)
    assert all(len(lab["objects"]) == 2 and matches_targets(lab["objects"], targets) for lab in ref.labels)
    assert {o["size"] for lab in ref.labels for o in lab["objects"]} == {"small"}  # the split's objects are small
    assert len({o["color"] for lab in ref.labels for o in lab["objects"]}) == 6
    again = D.reference_for(expr, "scenes", n_images=4, seed=3, n_labels=200, split="two_objects",
                            holds=lambda lab: matches_targets(lab["objects"], targets))
    assert again.labels == ref.labels and np.array_equal(again.images, ref.images)


# ---- reference data ----------------------------------------------------------------------------


def test_reference_satisfies_and_covers_the_held_out_combinations():
    expr = parse_entry_text("triangle & ~green")
    ref = D.reference_for(expr, "scenes", n_images=8, seed=5, n_labels=2000)
    assert len(ref.labels) >= 2000 and ref.images.shape == (8, 32, 32, 3)
    assert all(evaluate(expr, lab) for lab in ref.labels)
    colours = D.histogram([lab["objects"][0]["color"] for lab in ref.labels])
    assert set(colours) == {"red", "blue", "yellow", "purple", "cyan"}
    assert all(abs(p - 0.2) < 0.035 for p in colours.values())  # 5 colours, 2000 draws: sd 0.009
    # (triangle, yellow, large) is held out of the train split, not out of the reference
    assert any(lab["yellow"] and lab["large"] for lab in ref.labels)
    again = D.reference_for(expr, "scenes", n_images=8, seed=5, n_labels=2000)
    assert np.array_equal(again.images, ref.images)


def test_rendered_reference_images_match_their_labels():
    from conceptlang.judge.load import load_judge

    expr = parse_entry_text("black_hair & smiling")
    ref = D.reference_for(expr, "faces", n_images=32, seed=2, n_labels=32)
    judged = load_judge("faces").labels(ref.images)
    assert sum(evaluate(expr, lab) for lab in judged) >= 30


# ---- with the judge ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scenes_judge():
    from conceptlang.judge.load import load_judge

    return load_judge("scenes")


def test_scene_features_ignore_whole_pixel_shifts(scenes_judge):
    imgs, _ = generate("scenes", 4, seed=11)
    shifted = np.roll(imgs, (2, -1), axis=(1, 2))  # objects stay clear of the border (margins ≥ 2 px)
    a, b = D.judge_features(scenes_judge, imgs), D.judge_features(scenes_judge, shifted)
    assert a.shape == (4, 128)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert not np.allclose(a[0], a[1]) or not np.allclose(a[0], a[2])


def test_generator_data_scores_like_its_floor_and_a_collapse_does_not(scenes_judge):
    expr = parse_entry_text("square & ~yellow")
    n = 96
    ref = D.reference_for(expr, "scenes", n_images=n, seed=123, n_labels=n)
    labels = scenes_judge.labels(ref.images)
    ok = np.array([evaluate(expr, lab) for lab in labels]) & scenes_judge.valid(ref.images)
    good = D.distribution_metrics(expr, "scenes", ref.images, labels, ok, scenes_judge, seed=7, reference_labels=1500)
    assert good.n_samples == n and good.n_real == n and good.n_ok >= n - 2
    assert {f.family for f in good.fidelity} == {"color", "size", "position"}
    assert good.tv_max < 0.25 and good.precision >= 0.85 and good.recall >= 0.85
    assert good.near_dup == 0.0 and good.reference_images.shape == (n, 32, 32, 3)

    collapsed = np.repeat(ref.images[:1], n, axis=0)
    one = [labels[0]] * n
    bad = D.distribution_metrics(expr, "scenes", collapsed, one, np.ones(n, bool), scenes_judge, seed=7,
                                 reference_labels=1500)
    assert bad.near_dup == 1.0
    # one fake point repeated: its k-NN radius is 0, so recall counts only real points on top of it
    assert bad.recall <= 0.05
    colour = next(f for f in bad.fidelity if f.family == "color")
    assert colour.tv == pytest.approx(1 - colour.reference[labels[0]["objects"][0]["color"]])
    assert bad.kid > good.kid
    # the floors depend on the reference draws only, not on the samples
    assert (bad.precision_floor, bad.recall_floor, bad.kid_floor) == (good.precision_floor, good.recall_floor,
                                                                      good.kid_floor)
    assert D.distribution_metrics(expr, "toy", ref.images, labels, ok, scenes_judge, seed=7) is None
    none_ok = D.distribution_metrics(expr, "scenes", ref.images, labels, np.zeros(n, bool), scenes_judge, seed=7,
                                     reference_labels=200)
    assert none_ok.fidelity == [] and none_ok.tv_max is None and "TV not measured" in none_ok.note
    assert none_ok.recall == good.recall  # the feature figures take every sample, valid or not
    # a reference drawn once beforehand gives the same figures as the draw inside
    shared = D.reference_draw(expr, "scenes", n, seed=7, reference_labels=1500)
    again = D.distribution_metrics(expr, "scenes", collapsed, one, np.ones(n, bool), scenes_judge, seed=7,
                                   reference_labels=1500, reference=shared)
    assert again.to_json() == bad.to_json()


def test_json_round_trip_and_pooling():
    fid = [D.FamilyFidelity("color", 0.3, 0.05, {"red": 1.0}, {"red": 0.7, "blue": 0.3})]
    a = D.DistributionMetrics(n_samples=10, n_ok=8, n_real=10, reference_labels=100, reference_drawn=900,
                              fidelity=fid, precision=0.9, recall=0.5, kid=0.2, precision_floor=1.0,
                              recall_floor=0.9, kid_floor=0.0, near_dup=0.2, near_dup_floor=0.0)
    b = D.DistributionMetrics(n_samples=30, n_ok=30, n_real=30, reference_labels=100, reference_drawn=900,
                              fidelity=[D.FamilyFidelity("size", 0.1, 0.03, {}, {}),
                                        D.FamilyFidelity("shape", 0.2, 0.04, {}, {})],
                              precision=0.7, recall=0.7, kid=0.1, near_dup=0.0, near_dup_floor=0.0)
    back = D.DistributionMetrics.from_json(json.loads(json.dumps(a.to_json())))
    assert back.to_json() == a.to_json() and back.tv_max == 0.3 and back.worst_family.family == "color"
    p = D.pooled([("x", a), ("y", b), ("z", None)])
    assert p["expressions"] == 2 and p["families"] == 3
    assert p["tv_pooled"] == pytest.approx(0.2) and p["tv_pooled_floor"] == pytest.approx(0.04)
    assert p["tv_worst"] == {"tv": 0.3, "floor": 0.05, "expression": "x", "family": "color"}
    assert p["precision"] == pytest.approx(0.8) and p["recall"] == pytest.approx(0.6)
    assert p["near_dup"] == pytest.approx(2 / 40)  # 2 of a's 10 samples, none of b's 30
    table = D.summary_table([("scenes", p)])
    assert "| scenes | 2 | 0.20 (0.04) ✗ | 0.30 (0.05) ✗: `x`, color | 0.800 (1.000) ✗ | 0.600 (0.900) ✗ |" in table
    # a pooled precision just short of its target does not round onto it
    near = D.summary_table([("s", {**p, "precision": 0.8955, "precision_floor": 0.97})])
    assert "| 0.895 (0.970) ✗ |" in near
    assert "| 0.050 (0.000) ✗ |" in table
