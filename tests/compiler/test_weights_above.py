"""Calibrated concept weights limited to high noise levels (the registry's optional
``concept_weights_above`` hook, a manifest entry's ``concept_weights_above``)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from conceptlang.compiler import compile
from conceptlang.models.analytic import GaussianRegistry
from conceptlang.models.registry import load_registry
from conceptlang.sampling.api import rows_bound, sample
from tests.compiler.test_compile import CalibratedRegistry, X


class FloorRegistry(CalibratedRegistry):
    def __init__(self, weights, above, **kw):
        super().__init__(weights, **kw)
        self.above = above

    def concept_weights_above(self, models):
        return self.above


@pytest.fixture(scope="module")
def shipped():
    return load_registry()


def _by_label(g, coefs):
    return {leaf.label: c for leaf, c in zip(g.leaves, coefs)}


def _shares(g):
    """The disjuncts' shares, sorted (to 12 places: the same mixture lowered two ways)."""
    return sorted(round(d.share, 12) for d in g.disjuncts)


def _branch_colour(row):
    """The colour of a branch's joint leaf (the one that also holds the drawn position)."""
    return next(k.split(" & ")[0] for k, v in row.items() if v and k.startswith("color.") and "position" in k)


def _nonzero(row):
    """A row's nonzero coefficients (a mixture's rows hold every leaf of the graph)."""
    return {k: v for k, v in row.items() if v}


def _linear_floor(text, weights, red):
    """``text`` compiled with ``weights`` limited to σ ≥ 0.5: linear, red's coefficient ``red`` above
    (the prior's −red, the joint leaf's 1) and 0 below; returns the graph and its level notices."""
    g = compile(text, FloorRegistry(weights, 0.5), and_mode="joint")
    assert g.route == "linear" and g.weights_above == 0.5
    assert _by_label(g, g.linear_coefs) == {"color.red": red, "color.red & shape.circle": 1.0, "prior": -red}
    assert _by_label(g, g.low_linear_coefs) == {"color.red": 0.0, "color.red & shape.circle": 1.0, "prior": 0.0}
    return g, [n for n in g.notices if "act at noise levels" in n]


def test_below_the_level_a_linear_graph_takes_the_unweighted_coefficients():
    g, notices = _linear_floor("red & circle", {"red": 3.0}, 2.0)
    assert notices == ["the calibrated concept weights act at noise levels σ ≥ 0.5 (the models' manifest's "
                       "concept_weights_above); below, concepts score as written"]
    weighted = compile("red & circle", CalibratedRegistry({"red": 3.0}), and_mode="joint")
    plain = compile("red & circle", GaussianRegistry(), and_mode="joint")
    sigma = torch.tensor([0.1, 0.49, 0.5, 2.0], dtype=torch.float64)
    got = g.score(X, sigma)
    below = sigma < 0.5
    torch.testing.assert_close(got[below], plain.score(X, sigma)[below], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got[~below], weighted.score(X, sigma)[~below], rtol=1e-12, atol=1e-12)
    assert not torch.allclose(plain.score(X, sigma), weighted.score(X, sigma))


def test_each_disjunct_gets_its_own_row_without_weights():
    g = compile("red | circle", FloorRegistry({"red": 3.0}, 0.5), and_mode="joint")
    assert g.route == "dnf" and [leaf.label for leaf in g.leaves] == ["color.red", "prior", "shape.circle"]
    assert sorted((d.text, d.coefs, d.low_coefs) for d in g.disjuncts) == [
        ("red", (3.0, -2.0, 0.0), (1.0, 0.0, 0.0)), ("shape.circle", (0.0, 0.0, 1.0), (0.0, 0.0, 1.0))]
    # the shares are the weighted lowering's
    ref = compile("red | circle", CalibratedRegistry({"red": 3.0}), and_mode="joint")
    assert [d.share for d in g.disjuncts] == [d.share for d in ref.disjuncts]
    # the rows bound counts every leaf a chain uses at some level
    assert rows_bound(g) == rows_bound(ref)


def test_without_a_level_or_a_weight_nothing_changes():
    for reg in (FloorRegistry({"red": 3.0}, None), FloorRegistry({}, 0.5), CalibratedRegistry({"red": 3.0})):
        g = compile("red & circle", reg, and_mode="joint")
        assert g.weights_above is None and g.low_linear_coefs is None
    g = compile("red & circle", FloorRegistry({"red": 3.0}, 0.5), and_mode="joint", concept_weights=False)
    assert g.weights_above is None


def test_the_sampler_switches_rows_at_the_level():
    opts = dict(and_mode="joint")
    settings = dict(sampler="dpmpp_2m", steps=8, sigma_max=4.0, sigma_min=0.05)

    def draw(reg, text="red & circle"):
        return sample(compile(text, reg, **opts), 16, seed=3, **settings).images

    def floor(level):
        return FloorRegistry({"red": 3.0}, level, kind="implicit")

    weighted, plain = CalibratedRegistry({"red": 3.0}, kind="implicit"), GaussianRegistry("implicit")
    # a level above every step: the unweighted composition throughout; below every step: the weighted
    torch.testing.assert_close(draw(floor(100.0)), draw(plain), rtol=0, atol=1e-6)
    torch.testing.assert_close(draw(floor(0.0)), draw(weighted), rtol=0, atol=1e-6)
    mid = draw(floor(0.5))
    assert not torch.allclose(mid, draw(plain), atol=1e-4)
    assert not torch.allclose(mid, draw(weighted), atol=1e-4)
    # the DNF route: the same graph with every disjunct's low row as its row, drawn the same way
    g = compile("red | circle", floor(100.0), **opts)
    low = compile("red | circle", floor(100.0), **opts)
    low.disjuncts = tuple(replace(d, coefs=d.low_coefs) for d in low.disjuncts)
    low.weights_above = None
    got = sample(g, 16, seed=3, **settings)
    torch.testing.assert_close(got.images, sample(low, 16, seed=3, **settings).images, rtol=0, atol=1e-6)
    assert not torch.allclose(got.images, draw(weighted, "red | circle"), atol=1e-4)


def test_energies_follow_the_same_rows_as_scores():
    from conceptlang.sampling.api import _ChainTarget

    g = compile("red & circle", FloorRegistry({"red": 3.0}, 0.5), and_mode="joint")
    plain = compile("red & circle", GaussianRegistry(), and_mode="joint")
    weighted = compile("red & circle", CalibratedRegistry({"red": 3.0}), and_mode="joint")

    def target(graph, low=None):
        rows = torch.tensor([graph.linear_coefs], dtype=torch.float64).expand(X.shape[0], -1)
        return _ChainTarget(graph, rows, low=None if low is None else
                            torch.tensor([low], dtype=torch.float64).expand(X.shape[0], -1))

    sigma = torch.tensor([0.1, 0.2, 0.7, 2.0], dtype=torch.float64)
    energy, score = target(g, g.low_linear_coefs).energy_and_score(X, sigma)
    below = sigma < 0.5
    for ref, rows in ((plain, below), (weighted, ~below)):
        e_ref, s_ref = target(ref).energy_and_score(X, sigma)
        torch.testing.assert_close(energy[rows], e_ref[rows], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(score[rows], s_ref[rows], rtol=1e-12, atol=1e-12)


def test_a_written_weight_on_a_concept_acts_above_the_level_too():
    """``2 * red & circle``: the joint leaf (red, circle) plus (2 − 1)(E_red − E_prior) at σ ≥ the
    level, the leaf alone below; calibrated and written weights multiply."""
    g, notices = _linear_floor("2 * red & circle", {}, 1.0)
    assert notices == ["the written concept weights act at noise levels σ ≥ 0.5 (the models' manifest's "
                       "concept_weights_above); below, concepts score with weight 1"]
    _, notices = _linear_floor("2 * red & circle", {"red": 3.0}, 5.0)
    assert notices[0].startswith("the calibrated and written concept weights act")
    # without the level, the written weight acts at every level
    plain = compile("2 * red & circle", GaussianRegistry(), and_mode="joint")
    assert plain.weights_above is None
    sigma = torch.tensor([0.1, 0.49, 0.5, 2.0], dtype=torch.float64)
    below = sigma < 0.5
    joint_only = compile("red & circle", GaussianRegistry(), and_mode="joint")
    torch.testing.assert_close(g.score(X, sigma)[below], joint_only.score(X, sigma)[below], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g.score(X, sigma)[~below], plain.score(X, sigma)[~below], rtol=1e-12, atol=1e-12)
    # a negative weight keeps its ratio-form term at every level (no positive weight to drop)
    neg = compile("-1 * red & circle", FloorRegistry({}, 0.5), and_mode="joint")
    assert neg.weights_above is None


def test_a_repeated_concept_is_a_written_weight_at_the_level_too(shipped):
    """``red & (red & circle)`` reads as ``2 * red & circle``, so its repeat acts at σ ≥ the level
    only, as the written weight does: on the analytic models and on the shipped scenes, where
    the repeat comes out of a negated OR only after the negations are pushed in."""
    g, notices = _linear_floor("red & (red & circle)", {}, 1.0)
    assert notices == ["the written concept weights act at noise levels σ ≥ 0.5 (the models' manifest's "
                       "concept_weights_above); below, concepts score with weight 1"]
    sigma = torch.tensor([0.1, 0.49, 0.5, 2.0], dtype=torch.float64)
    written, _ = _linear_floor("2 * red & circle", {}, 1.0)
    torch.testing.assert_close(g.score(X, sigma), written.score(X, sigma), rtol=1e-12, atol=1e-12)
    # without a level the repeat acts at every level, as before
    assert compile("red & (red & circle)", GaussianRegistry(), and_mode="joint").weights_above is None
    nested = compile("~(green | (blue | ~cyan) | ~(~large & (cyan & ~triangle)))", shipped)
    plain = compile("2 * cyan & small & ~triangle", shipped)
    assert nested.weights_above == plain.weights_above == 0.3
    rows = [sorted((round(d.share, 12), tuple(_nonzero(_by_label(g, d.coefs)).items()),
                    tuple(_nonzero(_by_label(g, d.low_coefs)).items())) for d in g.disjuncts) for g in (nested, plain)]
    assert rows[0] == rows[1]
    low = _nonzero(_by_label(nested, nested.disjuncts[0].low_coefs))
    assert "color.cyan" not in low and sum(low.values()) == 1.0  # below: cyan once, in the joint leaf


def test_shipped_scenes_draw_the_free_families_of_a_weighted_conjunction_from_the_data(shipped):
    """``2 * red & circle`` compiles as ``red & circle`` does (size drawn per branch, position per
    chain), plus red's extra share above the manifest's level; a repeat the same, also one in a
    nested conjunction (``red & (red & circle)`` used to keep the repeat at every level: valid
    0.33 in 64)."""
    reg = shipped
    plain = compile("red & circle", reg)
    for text in ("2 * red & circle", "red & circle & red", "red & (red & circle)", "(red & circle) & (red)"):
        g = compile(text, reg)
        assert g.route == "dnf" and len(g.disjuncts) == len(plain.disjuncts) == 2
        assert [d.share for d in g.disjuncts] == [d.share for d in plain.disjuncts]
        assert any("free families size drawn as the data has them" in n for n in g.notices)
        assert g.weights_above == 0.3
        for d in g.disjuncts:
            row = _by_label(g, d.coefs)
            assert row["color.red"] == 1.0 and sum(v for k, v in row.items() if "shape.circle" in k) == 1.0
            assert _by_label(g, d.low_coefs)["color.red"] == 0.0


def test_a_weighted_named_place_is_spread_over_its_disc_like_an_unweighted_one(shipped):
    """``2 * position(0.3, 0.3) & red``: each chain's place drawn near the point, as for
    ``position(0.3, 0.3) & red``, and the weight's extra share on that drawn place above σ 0.3
    (it used to keep the exact point and act at every level: no valid sample in 64)."""
    reg = shipped
    plain = compile("position(0.3, 0.3) & red", reg)
    g = compile("2 * position(0.3, 0.3) & red", reg)
    assert g.weights_above == 0.3 and len(g.disjuncts) == len(plain.disjuncts)
    assert {leaf.label for leaf in plain.leaves} < {leaf.label for leaf in g.leaves}
    assert {leaf.label for leaf in g.leaves} - {leaf.label for leaf in plain.leaves} == {"position(drawn near 0.3, 0.3)"}
    assert any("position(0.3, 0.3) drawn per chain where it holds" in n for n in g.notices)
    for d in g.disjuncts:
        assert _by_label(g, d.coefs)["position(drawn near 0.3, 0.3)"] == 1.0
        assert _by_label(g, d.low_coefs)["position(drawn near 0.3, 0.3)"] == 0.0


def test_a_weighted_conjunction_adds_one_extra_share_of_its_joint_condition():
    """``w * (red & circle)``: the conjunction's concepts join the joint condition and one extra share
    (w − 1)·(E(x | red, circle) − E_prior) is added, so with no other term the energy is
    w·E_joint − (w − 1)·E_prior, exactly; above the manifest's level only, where one is set."""
    reg = GaussianRegistry()
    sigma = torch.tensor([0.1, 0.49, 0.5, 2.0], dtype=torch.float64)
    plain = compile("red & circle", reg, and_mode="joint")
    for w in (2.0, 0.5, 3.0):
        g = compile(f"{w!r} * (red & circle)", reg, and_mode="joint")
        assert g.route == "linear"
        assert _by_label(g, g.linear_coefs) == {"color.red & shape.circle": w, "prior": 1.0 - w}
    # the same with a third, unweighted concept beside it: the extra share is the group's alone
    g = compile("2 * (red & circle) & large", reg, and_mode="joint")
    assert _by_label(g, g.linear_coefs) == {"color.red & shape.circle & size.large": 1.0,
                                            "color.red & shape.circle": 1.0, "prior": -1.0}
    # above the level only: below, the unweighted conjunction
    g = compile("2 * (red & circle)", FloorRegistry({}, 0.5), and_mode="joint")
    assert g.weights_above == 0.5
    assert _by_label(g, g.low_linear_coefs) == {"color.red & shape.circle": 1.0, "prior": 0.0}
    below = sigma < 0.5
    torch.testing.assert_close(g.score(X, sigma)[below], plain.score(X, sigma)[below], rtol=1e-12, atol=1e-12)
    exact = compile("2 * (red & circle)", reg, and_mode="joint")
    torch.testing.assert_close(g.score(X, sigma)[~below], exact.score(X, sigma)[~below], rtol=1e-12, atol=1e-12)


def test_shipped_scenes_draw_the_free_families_of_a_weighted_conjunction_with_negations(shipped):
    """``2 * (circle & ~red)`` compiles as ``circle & ~red`` does (the complement's colours and the
    free size drawn per branch, in the same shares) plus, in each branch, one extra share of the
    joint condition on circle and that branch's colour above σ 0.3 (it used to stay a product of
    single-concept terms: colour TV 0.68 in 64 samples)."""
    reg = shipped
    plain = compile("circle & ~red", reg)
    g = compile("2 * (circle & ~red)", reg)
    assert g.route == "dnf" and len(g.disjuncts) == len(plain.disjuncts) == 10
    assert sorted(d.share for d in g.disjuncts) == sorted(d.share for d in plain.disjuncts)
    assert g.weights_above == 0.3
    for d in g.disjuncts:
        row = _by_label(g, d.coefs)
        colour = _branch_colour(row)
        assert row[f"{colour} & shape.circle"] == 1.0
        assert _by_label(g, d.low_coefs)[f"{colour} & shape.circle"] == 0.0


def test_a_weighted_conjunction_with_a_named_place_spreads_the_place_and_weights_the_values(shipped):
    """``2 * (position(0.3, 0.3) & red)``: as ``position(0.3, 0.3) & red`` (the place drawn per chain
    near the point, the free families drawn), plus one extra share of red above σ 0.3; the place
    takes no share (weighting it too left red objects yellow: 0.75 in 64). It used to be a product
    at the exact point, at every level."""
    reg = shipped
    plain = compile("position(0.3, 0.3) & red", reg)
    g = compile("2 * (position(0.3, 0.3) & red)", reg)
    assert g.route == "dnf" and g.weights_above == 0.3
    assert _shares(g) == _shares(plain)
    assert {leaf.label for leaf in g.leaves} - {leaf.label for leaf in plain.leaves} == {"color.red"}
    for d in g.disjuncts:
        assert _by_label(g, d.coefs)["color.red"] == 1.0 and _by_label(g, d.low_coefs)["color.red"] == 0.0
        assert sum(c for label, c in _by_label(g, d.coefs).items() if "position(drawn near 0.3, 0.3)" in label) == 1.0


def test_a_weighted_conjunction_with_negated_places_is_spliced_as_one_object(shipped):
    """``2 * (circle & ~position(0.6, 0.4) & ~position(0.4, 0.7))``: two negated places keep one
    object away from both points, so the conjunction is spliced as with one place: the place drawn
    away from both, colour and size drawn, an extra share of circle above σ 0.3 (it used to stay a
    product with ratio-form repulsions at every level). Two places outside negations are two objects,
    spliced too: drawn as one layout, as without the weight (they kept a plain product before); a
    negated OR holding a place is pushed and spliced too."""
    reg = shipped
    plain = compile("circle & ~position(0.6, 0.4) & ~position(0.4, 0.7)", reg)
    g = compile("2 * (circle & ~position(0.6, 0.4) & ~position(0.4, 0.7))", reg)
    assert g.route == "dnf" and g.weights_above == 0.3 and len(g.disjuncts) == len(plain.disjuncts) == 12
    assert _shares(g) == _shares(plain)
    assert {leaf.label for leaf in g.leaves} - {leaf.label for leaf in plain.leaves} == {"shape.circle"}
    for d in g.disjuncts:
        row = _by_label(g, d.coefs)
        assert row["shape.circle"] == 1.0 and _by_label(g, d.low_coefs)["shape.circle"] == 0.0
        assert sum(c for label, c in row.items() if "position(drawn away from 0.6, 0.4; 0.4, 0.7)" in label) == 1.0
    two = compile("2 * (position(0.4, 0.4) & position(0.6, 0.6))", reg)
    two_plain = compile("position(0.4, 0.4) & position(0.6, 0.6)", reg)
    assert two.route == "linear" and _by_label(two, two.linear_coefs) == _by_label(two_plain, two_plain.linear_coefs)
    assert sorted(_by_label(two, two.linear_coefs).values()) == [-1.0, 1.0, 1.0]
    nested = compile("0.5 * (~position(0.6, 0.4) & ~(position(0.4, 0.7) | ~circle))", reg)
    assert nested.route == "dnf" and _shares(nested) == _shares(plain)


def test_a_weighted_or_with_named_places_weights_the_values_and_not_the_places(shipped):
    """``1.5 * (position(0.7, 0.4) & blue | position(0.5, 0.3))``: the OR's regions in the data's
    shares; the branch near (0.7, 0.4) gives blue an extra 0.5 share above σ 0.3, the branch near
    (0.5, 0.3) names no value and gets none (it used to be refused: no one weight per branch)."""
    reg = shipped
    text = "1.5 * (position(0.7, 0.4) & blue | position(0.5, 0.3))"
    g = compile(text, reg)
    plain = compile("position(0.7, 0.4) & blue | position(0.5, 0.3)", reg)
    assert g.route == "dnf" and g.weights_above == 0.3 and g.or_weights.written == plain.or_weights.written
    assert {d.group for d in g.disjuncts} == {"position(0.7, 0.4) & blue", "position(0.5, 0.3)"}
    for d in g.disjuncts:
        row = _by_label(g, d.coefs)
        assert row.get("color.blue", 0.0) == (0.5 if d.group == "position(0.7, 0.4) & blue" else 0.0)
        assert _by_label(g, d.low_coefs).get("color.blue", 0.0) == 0.0


def test_a_weighted_conjunction_holding_a_negated_compound_is_spliced_too(shipped):
    """``1.5 * (triangle & ~(purple | green))``: the complement of the compound and the free size
    drawn as for the unweighted conjunction, and in each branch an extra 0.5 share of triangle and
    that branch's colour together (it used to be a product term in the ratio form, which implicit
    models refused when the compound held an OR)."""
    reg = shipped
    plain = compile("triangle & ~(purple | green)", reg)
    g = compile("1.5 * (triangle & ~(purple | green))", reg)
    assert g.route == "dnf" and len(g.disjuncts) == len(plain.disjuncts) == 8
    assert _shares(g) == _shares(plain)
    for d in g.disjuncts:
        row = _by_label(g, d.coefs)
        colour = _branch_colour(row)
        assert colour not in ("color.purple", "color.green")
        assert row[f"{colour} & shape.triangle"] == 0.5 and _by_label(g, d.low_coefs)[f"{colour} & shape.triangle"] == 0.0


def test_a_negatively_weighted_negation_is_what_it_negates_with_the_weights_magnitude(shipped):
    """``-2 * ~red & circle`` means ``2 * red & circle`` (the sign rule: a negative weight negates
    again) and compiles to the same graph, its extra share above σ 0.3 only; ``-1 * ~(smiling |
    black_hair)`` is the OR itself, data-weighted (both used to be refused by implicit models or kept
    as repulsions)."""
    reg = shipped
    a, b = compile("(-2 * ~red) & circle", reg), compile("2 * red & circle", reg)
    assert a.weights_above == b.weights_above == 0.3
    assert [leaf.label for leaf in a.leaves] == [leaf.label for leaf in b.leaves]
    assert sorted((d.coefs, d.low_coefs) for d in a.disjuncts) == sorted((d.coefs, d.low_coefs) for d in b.disjuncts)
    g = compile("-1 * ~(smiling | black_hair)", reg)
    ref = compile("smiling | black_hair", reg)
    assert g.or_weights.source == "data" and g.or_weights.written == ref.or_weights.written
    assert _shares(g) == _shares(ref)


def test_a_weighted_named_place_in_an_or_keeps_the_data_weights_and_weights_its_own_branches(shipped):
    """``red | 2 * position(0.3, 0.3)``: the same regions and data shares as ``red | position(0.3,
    0.3)``; the branches counted under the place (not red, near the point) take the weight's extra
    share of the drawn place above σ 0.3, as ``green & 2 * position(0.3, 0.3)`` does, and red's
    branches none (it used to fall back to equal shares: the place's branch drawn half the time
    against about a quarter in the data)."""
    reg = shipped
    g = compile("red | 2 * position(0.3, 0.3)", reg)
    plain = compile("red | position(0.3, 0.3)", reg)
    assert g.or_weights.source == "data" and g.weights_above == 0.3
    assert [round(w, 12) for _, w in g.or_weights.written] == [round(w, 12) for _, w in plain.or_weights.written]
    assert [t for t, _ in g.or_weights.written] == ["red", "2 * position(0.3, 0.3) (not an earlier branch)"]
    assert _shares(g) == _shares(plain)
    near = "position(drawn near 0.3, 0.3)"
    groups = {d.group for d in g.disjuncts}
    assert groups == {"red", "2 * position(0.3, 0.3)"}
    for d in g.disjuncts:
        row, low = _by_label(g, d.coefs), _by_label(g, d.low_coefs)
        if d.group == "red":
            assert near not in row or row[near] == 0.0
            continue
        colour = _branch_colour(row)
        assert colour != "color.red"
        assert row[near] == 1.0 and low[near] == 0.0
        alone = compile(f"{colour.split('.')[1]} & 2 * position(0.3, 0.3)", reg)
        assert _nonzero(row) in [_nonzero(_by_label(alone, e.coefs)) for e in alone.disjuncts]
    # a weight below 1 takes the share away instead, as in a conjunction
    half = compile("red | 0.5 * position(0.3, 0.3)", reg)
    assert _shares(half) == _shares(plain)
    assert {_by_label(half, d.coefs).get(near) for d in half.disjuncts if d.group != "red"} == {-0.5}


def test_a_weighted_conjunction_holding_a_negated_compound_with_a_place_is_planned_as_the_unweighted_one(shipped):
    """``0.5 * (red & ~(cyan & position(0.7, 0.5))) & ~position(0.6, 0.5)``: the same regions and
    data shares as without the weight (near (0.7, 0.5) and away from (0.6, 0.5), or away from both),
    red's weight acting above σ 0.3 only (the weight used to hide the negated compound from the
    plan, while the weights-free lowering below σ 0.3 found it, so the weights acted at every level:
    0.02 of 64 samples valid and satisfying)."""
    reg = shipped
    text = "red & ~(cyan & position(0.7, 0.5)) & ~position(0.6, 0.5)"
    plain = compile(text, reg)
    g = compile("0.5 * (red & ~(cyan & position(0.7, 0.5))) & ~position(0.6, 0.5)", reg)
    assert g.or_weights.source == plain.or_weights.source == "data"
    assert g.or_weights.branches == plain.or_weights.branches and g.weights_above == 0.3
    assert _shares(g) == _shares(plain)
    places = {leaf.condition["position"] for leaf in g.leaves if "shape" in leaf.condition}
    assert {(p.near, p.away, p.avoid) for p in places} == {((0.7, 0.5), False, (0.6, 0.5)),
                                                           ((0.6, 0.5, 0.7, 0.5), True, ())}
    for d in g.disjuncts:
        assert _by_label(g, d.coefs)["color.red"] == -0.5 and _by_label(g, d.low_coefs)["color.red"] == 0.0


def test_a_weighted_conjunction_holding_a_negated_or_with_a_place_is_planned_as_the_unweighted_one(shipped):
    """``2 * (~(cyan | yellow & position(0.5, 0.3)) & position(0.5, 0.6) & circle)``: the negated OR
    is read as ``~cyan & ~(yellow & position(0.5, 0.3))``, as without the weight, so the negated
    compound with a place is planned over the data's regions (it used to stay a ratio term beside
    an undrawn place: 0.45 of 64 samples valid and satisfying)."""
    reg = shipped
    inner = "~(cyan | yellow & position(0.5, 0.3)) & position(0.5, 0.6) & circle"
    plain = compile(inner, reg)
    g = compile(f"2 * ({inner})", reg)
    assert g.or_weights.source == plain.or_weights.source == "data"
    assert g.or_weights.branches == plain.or_weights.branches
    assert _shares(g) == _shares(plain)
    assert g.route == "dnf" and len(g.disjuncts) == len(plain.disjuncts) == 10
    places = {leaf.condition["position"] for leaf in g.leaves if "position" in leaf.condition}
    assert {(p.near, p.away) for p in places} == {((0.5, 0.6), False)}
    # no ratio term is left: only the prior is subtracted
    assert {label for d in g.disjuncts for label, c in _by_label(g, d.coefs).items() if c < 0} == {"prior"}


def test_a_negated_weighted_compound_with_a_place_is_the_negated_compound(shipped):
    """``~(2 * (position(0.6, 0.7) | large)) & position(0.4, 0.4)``: a weight under a negation does
    not change where the negation holds (the sign rule), so it compiles as ``~(position(0.6, 0.7) |
    large) & position(0.4, 0.4)``, with a notice (implicit models used to refuse it: the negated OR
    kept the log-sum-exp form)."""
    reg = shipped
    g = compile("~(2 * (position(0.6, 0.7) | large)) & position(0.4, 0.4)", reg)
    plain = compile("~(position(0.6, 0.7) | large) & position(0.4, 0.4)", reg)
    assert g.route == plain.route == "dnf"
    assert [leaf.label for leaf in g.leaves] == [leaf.label for leaf in plain.leaves]
    assert sorted((d.coefs, d.low_coefs) for d in g.disjuncts) == sorted((d.coefs, d.low_coefs) for d in plain.disjuncts)
    assert _shares(g) == _shares(plain)
    assert any("~2 * (position(0.6, 0.7) | large): a weighted negation is lowered as the negation" in n
               for n in g.notices)


def test_a_negatively_weighted_negated_conjunction_is_the_weighted_conjunction(shipped):
    """``-1 * 1.5 * ~(~eyeglasses & ~(young | brown_hair & eyeglasses))`` means ``1.5 *
    (~eyeglasses & ~(young | brown_hair & eyeglasses))`` (nested weights multiply to −1.5 on a
    negation: the sign rule) and compiles to the same graph, its extra share above σ 2 only (a
    compile fuzz found it refused: the conjunction the sign rule leaves was not spliced, and the
    weights-free lowering did not see through the nested weights)."""
    reg = shipped
    a = compile("-1 * 1.5 * ~(~eyeglasses & ~(young | brown_hair & eyeglasses))", reg)
    b = compile("1.5 * (~eyeglasses & ~(young | brown_hair & eyeglasses))", reg)
    assert a.route == b.route == "dnf" and a.weights_above == b.weights_above == 2.0
    assert [leaf.label for leaf in a.leaves] == [leaf.label for leaf in b.leaves]
    assert sorted((d.coefs, d.low_coefs) for d in a.disjuncts) == sorted((d.coefs, d.low_coefs) for d in b.disjuncts)
    assert _shares(a) == _shares(b)


def test_a_weight_the_complement_drops_records_no_level(shipped):
    """``~(~black_hair | 0.5 * smiling) & ~male`` is ``black_hair & ~smiling & ~male``: the only
    weight sits under a negation, which the complement lowers to the values where it holds, so the
    lowering without weights is the same graph and no level of the weights is recorded or noticed
    (one used to be: σ ≥ 2, for rows equal on both sides)."""
    g = compile("~(~black_hair | 0.5 * smiling) & ~male", shipped)
    plain = compile("black_hair & ~smiling & ~male", shipped)
    assert g.weights_above is None and not any("act at noise levels" in n for n in g.notices)
    assert _shares(g) == _shares(plain) and all(d.low_coefs is None for d in g.disjuncts)
    assert compile("0.5 * black_hair & ~male", shipped).weights_above == 2.0
