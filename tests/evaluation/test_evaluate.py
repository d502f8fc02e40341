"""The evaluator's arithmetic, on a fake sampler whose samples the PixelJudge reads exactly."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import conceptlang.compiler as compiler_pkg
import conceptlang.sampling as sampling_pkg
from conceptlang.evaluation.results import MergeError, merge_suite_results, suite_result_from_json, target_for
from conceptlang.evaluation.run import JudgeCache, evaluate_suite, seed_for, slug
from conceptlang.evaluation.scoring import branch_coverage, possible_disjuncts, top_level_disjuncts
from conceptlang.evaluation.stats import Proportion
from conceptlang.evaluation.suites import parse_suite
from conceptlang.evaluation.tables import suite_markdown
from conceptlang.syntax import parse_expr
from tests.evaluation.fakes import PixelJudge, pixel_images

# Per expression: the (A, B, invalid) flags of the samples the fake sampler returns, cycled to n.
PLANS = {
    "A": [(1, 0, 0)] * 9 + [(0, 0, 0)],  # 9/10 satisfy, all valid
    "A & B": [(1, 1, 0)] * 6 + [(1, 1, 1)] * 2 + [(1, 0, 0)] * 2,  # 6 ok, 2 invalid but satisfying, 2 wrong
    "A | B": [(1, 0, 0)] * 7 + [(0, 1, 0)] * 2 + [(1, 1, 0)] + [(0, 0, 1)] * 0,
    "A & ~B": [(1, 0, 0)] * 8 + [(0, 0, 1)] * 2,
}


@pytest.fixture
def fake_pipeline(monkeypatch):
    calls = []

    def fake_compile(expr, registry, **kw):
        from conceptlang.syntax import unparse

        def groups(branches):  # the graph's written OR branches: chains drawing disjunct 0 and 1
            return [("A", int((branches == 0).sum())), ("B", int((branches == 1).sum()))]

        return SimpleNamespace(expr=expr, domain="toy",
                               branch_groups=groups if "|" in unparse(expr) else (lambda branches: None))

    def fake_sample(graph, n, seed=0, device="auto", **kw):
        from conceptlang.syntax import unparse

        calls.append((unparse(graph.expr), n, seed))
        plan = PLANS[unparse(graph.expr)]
        flags = [plan[i % len(plan)] for i in range(n)]
        u8 = pixel_images(flags)
        x = torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (N, 3, 4, 4)
        return SimpleNamespace(images=x, settings={"steps": 7}, seconds=0.0, branches=torch.tensor([0, 1] * (n // 2)))

    monkeypatch.setattr(compiler_pkg, "compile", fake_compile, raising=False)
    monkeypatch.setattr(sampling_pkg, "sample", fake_sample, raising=False)
    return calls


def _run(tmp_path, n=10, seed=3):
    suite = parse_suite("A\n[pair]\nA & B\nA | B\nA & ~B\n")
    return evaluate_suite(suite, registry=None, n=n, seed=seed, device="cpu", grid_dir=tmp_path / "grids",
                          judges=JudgeCache(lambda d: PixelJudge()))


def test_accuracy_counts_valid_and_satisfying(fake_pipeline, tmp_path):
    res = _run(tmp_path)
    by = {r.text: r for r in res.results}
    assert by["A"].accuracy == Proportion(9, 10)
    assert by["A & B"].accuracy == Proportion(6, 10)
    assert by["A & B"].satisfied == Proportion(8, 10)
    assert by["A & B"].valid == Proportion(8, 10)
    assert by["A & ~B"].accuracy == Proportion(8, 10)
    assert by["A"].settings == {"steps": 7}
    assert by["A"].drawn_branches is None and by["A | B"].drawn_branches == {"A": 5, "B": 5}
    assert all(r.error is None for r in res.results)


def test_or_branch_coverage(fake_pipeline, tmp_path):
    r = {r.text: r for r in _run(tmp_path).results}["A | B"]
    assert [b.text for b in r.branches] == ["A", "B"]
    assert r.branches[0].satisfied_valid == Proportion(8, 10)
    assert r.branches[1].satisfied_valid == Proportion(3, 10)
    assert [b.target for b in r.branches] == [0.25, 0.25]
    assert all(b.meets for b in r.branches)
    assert r.accuracy == Proportion(10, 10) and r.meets_target is True


def test_branch_coverage_flags_a_starved_branch():
    labels = [{"A": True, "B": False, "C": False}] * 9 + [{"A": False, "B": False, "C": True}]
    valid = np.array([True] * 10)
    cov = branch_coverage(top_level_disjuncts(parse_expr("A | (B | C)")), labels, valid)
    assert [b.text for b in cov] == ["A", "B", "C"]
    assert [b.satisfied_valid.successes for b in cov] == [9, 0, 1]
    assert cov[0].target == pytest.approx(1 / 6)
    assert [b.meets for b in cov] == [True, False, False]


def test_a_branch_no_one_object_satisfies_has_no_target():
    """``purple & yellow | ~large``: the first branch cannot hold for one object, so the fair share
    is taken over the other branch alone and the impossible one is not flagged."""
    from conceptlang.evaluation.results import BranchCoverage, ExpressionResult
    from conceptlang.evaluation.tables import _fmt_branches
    from conceptlang.models.registry import load_registry

    disjuncts = top_level_disjuncts(parse_expr("purple & yellow | ~large | circle"))
    possible = possible_disjuncts(disjuncts, load_registry(), "scenes")
    assert possible == [False, True, True]
    labels = [{"purple": False, "yellow": False, "large": False, "circle": True}] * 4
    cov = branch_coverage(disjuncts, labels, np.array([True] * 4), possible)
    assert [b.target for b in cov] == [0.0, 0.25, 0.25]
    assert [b.meets for b in cov] == [True, True, True] and not cov[0].possible
    assert BranchCoverage.from_json(cov[0].to_json()) == cov[0]
    r = ExpressionResult("x", "x", "or", 3, (), "scenes", 0, 4, branches=cov)
    assert _fmt_branches(r).startswith("`purple & yellow`: no one object satisfies it; `~large` 1.00")


def test_branch_coverage_counts_only_valid_samples():
    labels = [{"A": True, "B": False}] * 4 + [{"A": False, "B": True}] * 4
    valid = np.array([True] * 4 + [False, False, False, True])
    cov = branch_coverage(top_level_disjuncts(parse_expr("A | B")), labels, valid)
    assert cov[0].satisfied_valid == Proportion(4, 5)
    assert cov[1].satisfied_valid == Proportion(1, 5)
    assert not cov[1].meets  # 0.2 < 1/4


def test_summaries_pool_counts(fake_pipeline, tmp_path):
    res = _run(tmp_path)
    op = res.summary("operator")
    assert list(op) == ["single", "and", "not", "or"]
    assert op["and"]["accuracy"] == Proportion(6, 10)
    k = res.summary("n_concepts")
    assert list(k) == ["1", "2"]
    assert k["2"]["accuracy"] == Proportion(6 + 10 + 8, 30)
    assert k["2"]["worst"].text == "A & B"
    tags = res.summary("tag")
    assert tags["pair"]["accuracy"] == Proportion(24, 30) and tags["(untagged)"]["expressions"] == 1
    # targets: single 0.95 (0.9 misses), and2 0.90 (0.6 misses), not 0.85 (0.8 misses), or 0.90 (hit)
    assert op["single"]["meeting_target"] == (0, 1) and op["or"]["meeting_target"] == (1, 1)


def test_seeds_depend_on_text_not_position(fake_pipeline, tmp_path):
    _run(tmp_path, seed=3)
    first = {t: s for t, _, s in fake_pipeline}
    fake_pipeline.clear()
    suite = parse_suite("A & ~B\nA\n")
    evaluate_suite(suite, None, n=4, seed=3, device="cpu", judges=JudgeCache(lambda d: PixelJudge()))
    again = {t: s for t, _, s in fake_pipeline}
    assert again["A"] == first["A"] == seed_for("A", 3)
    assert again["A & ~B"] == first["A & ~B"]
    assert seed_for("A", 3) != seed_for("A", 4)


def test_json_markdown_and_grids(fake_pipeline, tmp_path):
    res = _run(tmp_path)
    j = json.loads(json.dumps(res.to_json()))
    assert j["n"] == 10 and len(j["results"]) == 4
    assert j["results"][1]["accuracy"]["successes"] == 6
    assert j["results"][1]["per_sample"]["valid"].count(False) == 2
    assert j["summary"]["operator"]["and"]["accuracy"]["successes"] == 6
    assert "images" not in j["results"][0]
    md = suite_markdown(res)
    assert "| `A & B` | and | 2 | pair | 0.80 | 0.60 [0.31, 0.83] | ≥ 0.90 ✗ |" in md
    assert "`A` 0.80; `B` 0.30" in md
    assert "By operator" in md and "By number of concepts" in md and "By tag" in md
    grids = sorted(p.name for p in (tmp_path / "grids").iterdir())
    assert grids == ["A.png", "A_and_B.png", "A_and_not_B.png", "A_or_B.png"]
    from PIL import Image

    im = np.asarray(Image.open(tmp_path / "grids" / "A_and_B.png"))
    assert im.ndim == 3 and im.shape[2] == 3


def test_failures_are_recorded_not_raised(fake_pipeline, monkeypatch, tmp_path):
    from conceptlang.errors import CompileError

    def bad_compile(expr, registry, **kw):
        raise CompileError("no model for 'A'")

    monkeypatch.setattr(compiler_pkg, "compile", bad_compile, raising=False)
    res = evaluate_suite(parse_suite("A\n"), None, n=4, device="cpu", judges=JudgeCache(lambda d: PixelJudge()))
    assert res.results[0].error == "CompileError: no model for 'A'"
    assert res.results[0].accuracy is None
    assert "failed: CompileError" in suite_markdown(res)
    with pytest.raises(CompileError):
        evaluate_suite(parse_suite("A\n"), None, n=4, device="cpu", keep_going=False,
                       judges=JudgeCache(lambda d: PixelJudge()))


def test_targets_follow_issue_6():
    assert target_for("single", 1) == 0.95
    assert [target_for("and", k) for k in (2, 3, 4, 5)] == [0.90, 0.85, 0.80, 0.80]
    assert target_for("not", 2) == 0.85 and target_for("or", 2) == 0.90
    assert target_for("nested", 3) is None


def test_slug():
    assert slug("(male & smiling) | ~black_hair") == "male_and_smiling_or_not_black_hair"
    assert slug("position(0.3, 0.7) & color.red") == "position_0-3_0-7_and_color-red"


@pytest.mark.parametrize(
    "text,domain,k",
    [
        ("circle & red", "scenes", 1),
        ("position(0.25, 0.3) & position(0.75, 0.7)", "scenes", 2),
        ("position(0.2, 0.2) & position(0.5, 0.5) & position(0.8, 0.8)", "scenes", 3),
        ("position(0.25, 0.3) | position(0.75, 0.7)", "scenes", 1),
        ("position(0.25, 0.3) & position(0.25, 0.3)", "scenes", 1),
        ("position(0.25, 0.3) & position(0.75, 0.7) & ~red", "scenes", 2),
        ("position(0.25, 0.3) & ~position(0.75, 0.7)", "scenes", 1),
        ("position(0.25, 0.3) | position(0.25, 0.3) & position(0.75, 0.7)", "scenes", (1, 2)),
        ("male & smiling", "faces", None),
    ],
)
def test_expected_objects(text, domain, k):
    from conceptlang.evaluation.scoring import expected_objects

    assert expected_objects(parse_expr(text), domain) == k


def test_invalid_reasons_are_counted_without_numbers(fake_pipeline, tmp_path):
    r = {r.text: r for r in _run(tmp_path).results}["A & B"]
    assert r.invalid_reasons == {"object # colour is far from the palette": 2, "# objects, expected #": 2}


# ------------------------------------------------------------------ merging split runs


def _split_runs(tmp_path, n=10, seed=3):
    judges = JudgeCache(lambda d: PixelJudge())
    one = evaluate_suite(parse_suite("A & ~B\nA\n"), None, n=n, seed=seed, device="cpu", judges=judges)
    two = evaluate_suite(parse_suite("A | B\nA & B\n"), None, n=n, seed=seed, device="cpu", judges=judges)
    return one, two


def test_suite_result_json_round_trip(fake_pipeline, tmp_path):
    res = _run(tmp_path)
    data = json.loads(json.dumps(res.to_json()))
    back = suite_result_from_json(data)
    assert back.to_json() == data
    r = back.results[2]
    assert r.text == "A | B" and r.branches[1].satisfied_valid == Proportion(3, 10)
    assert r.meets_target is True and back.results[1].meets_target is False


def test_merge_pools_split_runs_into_the_single_run_table(fake_pipeline, tmp_path):
    whole = _run(tmp_path)
    one, two = _split_runs(tmp_path)
    order = parse_suite("A\n[pair]\nA & B\nA | B\nA & ~B\n")
    parts = [suite_result_from_json(json.loads(json.dumps(p.to_json()))) for p in (one, two)]
    merged = merge_suite_results(parts, order=order)
    assert [r.text for r in merged.results] == ["A", "A & B", "A | B", "A & ~B"]
    assert [r.tags for r in merged.results] == [(), ("pair",), ("pair",), ("pair",)]
    assert parts[0].results[0].tags == ()  # the parts are not modified
    assert merged.seconds == pytest.approx(parts[0].seconds + parts[1].seconds)
    # Same seeds per expression, so the counts and summaries are the single run's.
    assert [r.accuracy for r in merged.results] == [r.accuracy for r in whole.results]
    assert merged.to_json()["summary"] == whole.to_json()["summary"]
    # Without a suite: the parts' order and their own tags.
    plain = merge_suite_results([two, one])
    assert [r.text for r in plain.results] == ["A | B", "A & B", "A & ~B", "A"]


def test_merge_refuses_parts_that_do_not_pool(fake_pipeline, tmp_path):
    one, two = _split_runs(tmp_path)
    other_n, _ = _split_runs(tmp_path, n=8)
    with pytest.raises(MergeError, match=r"b\.json: n = 8, base seed 3 differ from a\.json's n = 10"):
        merge_suite_results([one, other_n], names=["a.json", "b.json"])
    with pytest.raises(MergeError, match=r"'A & ~B' was already measured in a\.json"):
        merge_suite_results([one, one], names=["a.json", "c.json"])
    with pytest.raises(MergeError, match=r"not in s\.txt: 'A & ~B'"):
        merge_suite_results([one], order=parse_suite("A\n", path="s.txt"))
    with pytest.raises(MergeError, match="nothing to merge"):
        merge_suite_results([])
    with pytest.raises(MergeError, match=r"x\.json: not a 'conceptlang eval -o' file"):
        suite_result_from_json({"rows": []}, where="x.json")
    with pytest.raises(MergeError, match=r"x\.json: malformed eval result \(KeyError"):
        suite_result_from_json({"results": [{"name": "A"}], "n": 1, "seed": 0}, where="x.json")
