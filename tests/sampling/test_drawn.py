"""free_families="data" on a continuous family: each chain draws its own position from the data.

A conjunction that leaves scenes ``position`` free gets ``position(drawn)`` in its joint
condition; the sampler draws each chain's (x, y) with the registry's ``value_draws`` given the
branch's other values and fills it into that chain's condition. Checked exactly on the analytic
Gaussian registry (a drawn position gives the same score as the same position written out, and
chains land on the Gaussian of their own draw), and on the shipped scenes registry's draws.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conceptlang.compiler import compile as compile_expr
from conceptlang.data import scenes
from conceptlang.errors import SamplingError
from conceptlang.interface import DRAWN, ConceptRef, Drawn
from conceptlang.models.analytic import GaussianRegistry, gaussian_for
from conceptlang.models.registry import load_registry
from conceptlang.sampling import sample
from conceptlang.sampling.api import draw_chain_values
from tests.sampling.gauss_helpers import mean_tolerance

PLACES = ((0.8, 0.2), (0.2, 0.75))


@pytest.fixture(scope="module")
def scenes_registry():
    return load_registry()


class _DrawRegistry(GaussianRegistry):
    """The analytic registry that draws positions: chain k gets PLACES[k % 2] (the given values
    are recorded, so a test can check what the draws were conditioned on)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked: list[tuple[str, dict]] = []

    def value_draws(self, domain, family, given, n, seed, **where):
        if family != "position":
            return None
        self.asked.append((family, dict(given), *(where.items())))
        return np.array([PLACES[k % 2] for k in range(n)], dtype=np.float64)


def test_a_free_position_is_drawn_in_each_branch_and_left_alone_where_named():
    reg = _DrawRegistry("implicit")
    g = compile_expr("red", reg, free_families="data", and_mode="joint")
    assert g.route == "linear" and [leaf.label for leaf in g.leaves] == ["color.red & position(drawn)"]
    assert g.drawn_leaves == {0: ("position",)} and g.drawer == reg.value_draws
    assert any("position drawn per chain" in n for n in g.notices)
    assert "position: <drawn>" in g.explain()
    for text, opts in (("red & position(0.3, 0.3)", {"free_families": "data"}),  # named
                       ("red", {"free_families": "discrete"}),  # discrete families only
                       ("red", {"free_families": "model"}),
                       ("red", {"free_families": "data", "and_mode": "product"}),  # no joint leaf
                       ("red & position(0.2, 0.2) & position(0.8, 0.8)", {"free_families": "data"})):
        g = compile_expr(text, reg, **{"and_mode": "joint", **opts})
        assert g.drawn_leaves == {} and g.drawer is None, text
    # a registry without value_draws (own data): the family stays the model's
    g = compile_expr("red", GaussianRegistry("implicit"), free_families="data", and_mode="joint")
    assert g.drawn_leaves == {} and [leaf.label for leaf in g.leaves] == ["color.red"]
    assert ConceptRef("gauss", "position", drawn=True).qualified == "position(drawn)"


def test_a_drawn_position_scores_as_the_same_position_written_out():
    reg = _DrawRegistry("implicit")
    g = compile_expr("red & ~square", reg, free_families="data", and_mode="joint")
    reg.asked.clear()  # (the compiler asked once whether the registry can draw positions at all)
    values = draw_chain_values(g, 6, seed=0)
    assert set(values) == {(leaf, "position") for leaf in g.drawn_leaves}
    # the draw is conditioned on the leaf's other values, not on the drawn family
    assert reg.asked == [("position", {"color": "red"})]
    x = torch.randn(6, 2, 1, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sigma = torch.full((6,), 0.3, dtype=torch.float64)
    coefs = torch.tensor([g.linear_coefs] * 6, dtype=torch.float64)
    got = g.linear_score(x, coefs, sigma, g.chain_conditions(values, x.device))
    for k in range(6):
        px, py = PLACES[k % 2]
        w = compile_expr(f"red & ~square & position({px}, {py})", reg, free_families="data", and_mode="joint")
        want = w.linear_score(x[k:k + 1], torch.tensor([w.linear_coefs], dtype=torch.float64), sigma[k:k + 1])
        assert torch.allclose(got[k:k + 1], want, rtol=0, atol=1e-6), k
    # without per-chain conditions the drawn family is null: the model's own marginal
    plain = compile_expr("red & ~square", reg, free_families="discrete", and_mode="joint")
    assert torch.allclose(g.linear_score(x, coefs, sigma),
                          plain.linear_score(x, torch.tensor([plain.linear_coefs] * 6, dtype=torch.float64), sigma),
                          rtol=0, atol=1e-6)


def test_each_chain_lands_on_the_gaussian_of_its_own_draw():
    reg = _DrawRegistry("implicit")
    g = compile_expr("red", reg, free_families="data", and_mode="joint")
    n = 600
    res = sample(g, n, seed=3, sampler="dpmpp_2m", steps=40, sigma_max=20.0, batch_size=64, device="cpu")
    assert res.settings["drawn"] == ["position"]
    pts = res.images.view(n, 2).double()
    for k, place in enumerate(PLACES):
        want = gaussian_for({"color": "red", "position": place})
        got = pts[k::2]
        tol = mean_tolerance(want.scale ** 2, got.shape[0], bias=0.01)
        assert torch.allclose(got.mean(0), torch.tensor(want.mean, dtype=torch.float64), atol=tol), (place, got.mean(0))
        assert got.std(0).tolist() == pytest.approx([want.scale] * 2, rel=0.1)


def test_bad_draws_are_a_sampling_error():
    class Broken(_DrawRegistry):
        def value_draws(self, domain, family, given, n, seed):
            return np.full((n, 2), np.nan) if family == "position" else None

    g = compile_expr("red", Broken("implicit"), free_families="data", and_mode="joint")
    with pytest.raises(SamplingError, match="not 4 finite rows"):
        sample(g, 4, sampler="dpmpp_2m", steps=4, device="cpu", draws="independent")
    # a spread draw asks for a pool of 6² values per chain
    with pytest.raises(SamplingError, match="not 144 finite rows"):
        sample(g, 4, sampler="dpmpp_2m", steps=4, device="cpu")
    with pytest.raises(SamplingError, match="draws must be one of spread, independent, got 'lattice'"):
        sample(g, 4, sampler="dpmpp_2m", steps=4, device="cpu", draws="lattice")


def test_scenes_draws_follow_the_generator_given_the_branch(scenes_registry):
    reg = scenes_registry
    a = reg.value_draws("scenes", "position", {"shape": "triangle", "size": "large", "color": "red"}, 2000, 7)
    assert a.shape == (2000, 2) and np.array_equal(
        a, reg.value_draws("scenes", "position", {"shape": "triangle", "size": "large", "color": "red"}, 2000, 7))
    half = scenes.half_extent(np.array(2), scenes.EXTENT_ARRAY[scenes.SIZES.index("large")])
    lo, hi = scenes.MARGIN + half, 1 - scenes.MARGIN - half
    assert (a >= lo - 1e-6).all() and (a <= hi + 1e-6).all()
    # uniform between the bounds: mean at the centre, variance (hi − lo)² / 12
    assert a.mean(0) == pytest.approx((lo + hi) / 2, abs=0.01)
    assert a.var(0) == pytest.approx((hi - lo) ** 2 / 12, rel=0.1)
    small = reg.value_draws("scenes", "position", {"size": "small"}, 2000, 7)
    assert small.min() < lo.min() - 0.05 and small.max() > hi.max() + 0.05  # small objects reach further out
    assert not np.array_equal(a, reg.value_draws("scenes", "position", {"shape": "triangle", "size": "large"}, 2000, 8))
    assert reg.value_draws("faces", "position", {}, 4, 0) is None
    assert reg.value_draws("scenes", "color", {}, 4, 0) is None


def test_scenes_conjunctions_draw_their_position(scenes_registry):
    g = compile_expr("triangle & ~green", scenes_registry)  # the shipped options: free_families data
    assert g.options["free_families"] == "data" and len(g.drawn_leaves) == 10
    assert all(g.leaves[i].condition["position"] == DRAWN for i in g.drawn_leaves)
    # a named position: drawn near the point (the shipped named_positions=data), or the point itself
    g = compile_expr("triangle & position(0.3, 0.7)", scenes_registry)
    assert g.options["named_positions"] == "data" and len(g.drawn_leaves) == 12
    assert {g.leaves[i].condition["position"] for i in g.drawn_leaves} == {Drawn((0.3, 0.7))}
    # within the shipped named_radius 0.095 (inside the tolerance 0.1 by the model's placement
    # error), spread over that whole disc
    assert g.options["named_radius"] == 0.095
    values = draw_chain_values(g, 2000, seed=3)
    dist = torch.cat([torch.hypot(v[:, 0] - 0.3, v[:, 1] - 0.7) for (_, fam), v in values.items() if fam == "position"])
    assert len(dist) == 12 * 2000 and float(dist.max()) <= 0.095 + 1e-6 and float(dist.max()) > 0.094
    assert float((dist ** 2).mean()) == pytest.approx(0.095 ** 2 / 2, rel=0.05)  # uniform over the disc
    g = compile_expr("triangle & position(0.3, 0.7)", scenes_registry, named_positions="point")
    assert g.drawn_leaves == {}


def test_scenes_draws_of_a_rare_combination_cycle_and_an_unmatched_one_is_the_marginal(scenes_registry, monkeypatch):
    reg = scenes_registry
    monkeypatch.setattr(type(reg), "DRAW_BATCH", 64)
    monkeypatch.setattr(type(reg), "DRAW_ROUNDS", 1)
    given = {"shape": "circle", "color": "red", "size": "large"}  # 1 in 36 of the draws
    a = reg.value_draws("scenes", "position", given, 100, 1)  # one round of 800 draws: fewer than 100 match
    got = len(np.unique(a, axis=0))
    assert a.shape == (100, 2) and 5 < got < 100 and np.array_equal(a[:got], a[got:2 * got])
    # a value the domain does not have constrains nothing: the family's marginal
    m = reg.value_draws("scenes", "position", {"color": "magenta"}, 500, 1)
    assert len(np.unique(m, axis=0)) == 500 and m.min() < 0.25 and m.max() > 0.75


def test_a_named_position_is_drawn_where_it_holds_with_named_positions_data():
    from conceptlang.errors import CompileError
    from conceptlang.syntax.semantics import POSITION_TOLERANCE

    reg = _DrawRegistry("implicit")
    opts = {"free_families": "data", "and_mode": "joint"}
    g = compile_expr("red & position(0.3, 0.6)", reg, named_positions="data", **opts)
    assert [leaf.label for leaf in g.leaves] == ["color.red & position(drawn near 0.3, 0.6)"]
    assert g.leaves[0].condition["position"] == Drawn((0.3, 0.6)) and "<drawn near 0.3, 0.6>" in g.explain()
    reg.asked.clear()
    draw_chain_values(g, 4, seed=0)
    assert reg.asked == [("position", {"color": "red"}, ("near", (0.3, 0.6)), ("radius", POSITION_TOLERANCE))]
    # the point itself by default, or without free_families=data
    for o in ({}, {"named_positions": "data", "free_families": "discrete"}):
        g = compile_expr("red & position(0.3, 0.6)", reg, **{**opts, **o})
        assert g.drawn_leaves == {} and g.leaves[0].condition["position"] == (0.3, 0.6)
    with pytest.raises(CompileError, match="named_positions must be one of point, data"):
        compile_expr("red", reg, named_positions="disc")


@pytest.mark.parametrize("and_mode", ["product", "sum"])
def test_separate_factor_models_draw_a_named_position_near_its_point(and_mode):
    """named_positions=data in the sum and product modes (no joint model): each positive named
    position's own leaf draws its point per chain, and scores exactly as that point written out."""
    reg = _DrawRegistry("implicit")
    opts = {"and_mode": and_mode, "named_positions": "data", "named_radius": 0.05}
    g = compile_expr("red & position(0.3, 0.6)", reg, **opts)
    spread = [leaf.index for leaf in g.leaves if leaf.label == "position(drawn near 0.3, 0.6)"]
    assert len(spread) == 1 and g.drawn_leaves == {spread[0]: ("position",)}
    assert g.leaves[spread[0]].condition == {"position": Drawn((0.3, 0.6))}
    assert any("position(0.3, 0.6) drawn per chain where it holds (within 0.05 of the point" in n for n in g.notices)
    reg.asked.clear()
    values = draw_chain_values(g, 4, seed=0)
    assert reg.asked == [("position", {}, ("near", (0.3, 0.6)), ("radius", 0.05))]
    x = torch.randn(4, 2, 1, 1, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    sigma = torch.full((4,), 0.4, dtype=torch.float64)
    got = g.linear_score(x, torch.tensor([g.linear_coefs] * 4, dtype=torch.float64), sigma,
                         g.chain_conditions(values, x.device))
    for k in range(4):
        px, py = PLACES[k % 2]
        w = compile_expr(f"red & position({px}, {py})", reg, and_mode=and_mode)
        want = w.linear_score(x[k:k + 1], torch.tensor([w.linear_coefs], dtype=torch.float64), sigma[k:k + 1])
        assert torch.allclose(got[k:k + 1], want, rtol=0, atol=1e-6), k
    # a negated or weighted-negative position, the default option, and a registry that cannot draw
    # positions keep the point
    for text, reg2, o in (("red & ~position(0.3, 0.6)", reg, opts), ("red & position(0.3, 0.6)", reg, {"and_mode": and_mode}),
                          ("red & position(0.3, 0.6)", GaussianRegistry("implicit"), opts),
                          ("red & -1 * position(0.3, 0.6)", reg, opts)):
        g = compile_expr(text, reg2, **o)
        assert g.drawn_leaves == {} and any(leaf.condition.get("position") == (0.3, 0.6) for leaf in g.leaves), text


def test_named_radius_sets_the_disc_a_named_position_is_drawn_from():
    from conceptlang.errors import CompileError

    reg = _DrawRegistry("implicit")
    opts = {"free_families": "data", "and_mode": "joint", "named_positions": "data"}
    g = compile_expr("red & position(0.3, 0.6)", reg, named_radius=0.04, **opts)
    assert g.options["named_radius"] == 0.04
    reg.asked.clear()
    draw_chain_values(g, 4, seed=0)
    assert reg.asked == [("position", {"color": "red"}, ("near", (0.3, 0.6)), ("radius", 0.04))]
    for bad in (0.0, -0.05, 0.11, "wide"):
        with pytest.raises(CompileError, match="named_radius must be"):
            compile_expr("red", reg, named_radius=bad, **opts)


def test_scenes_draws_near_a_point_stay_within_the_tolerance_and_fall_back_to_the_point(scenes_registry):
    reg = scenes_registry
    given = {"shape": "triangle", "size": "large"}
    a = reg.value_draws("scenes", "position", given, 300, 3, near=(0.45, 0.55), radius=0.1)
    assert a.shape == (300, 2) and len(np.unique(a, axis=0)) == 300
    assert np.linalg.norm(a - [0.45, 0.55], axis=1).max() <= 0.1
    half = scenes.half_extent(np.array(2), scenes.EXTENT_ARRAY[scenes.SIZES.index("large")])
    assert (a >= scenes.MARGIN + half - 1e-6).all() and (a <= 1 - scenes.MARGIN - half + 1e-6).all()
    # the disc spread as the data spreads it: mean distance of a uniform disc is 2/3 of its radius
    assert np.linalg.norm(a - [0.45, 0.55], axis=1).mean() == pytest.approx(0.1 * 2 / 3, abs=0.01)
    # a large triangle cannot be centred in the corner: no draw holds there, so the point itself
    b = reg.value_draws("scenes", "position", given, 5, 3, near=(0.05, 0.05), radius=0.01)
    assert np.array_equal(b, np.tile([0.05, 0.05], (5, 1)))


def test_a_negated_place_is_drawn_where_it_does_not_hold_with_the_complement():
    from conceptlang.syntax.semantics import POSITION_TOLERANCE

    reg = _DrawRegistry("implicit")
    opts = {"free_families": "data", "and_mode": "joint", "negation": "complement"}
    g = compile_expr("red & ~position(0.3, 0.6)", reg, **opts)
    assert g.route == "linear" and [leaf.label for leaf in g.leaves] == ["color.red & position(drawn away from 0.3, 0.6)"]
    assert g.leaves[0].condition["position"] == Drawn((0.3, 0.6), away=True)
    assert "<drawn away from 0.3, 0.6>" in g.explain()
    (gr,) = g.groundings
    assert gr.how == "away" and gr.describe() == (
        f"~position(0.3, 0.6): lowered to the complement, the place drawn per chain from the data where it does not "
        f"hold (farther than {POSITION_TOLERANCE:g} from the point)")
    reg.asked.clear()
    draw_chain_values(g, 4, seed=0)
    assert reg.asked == [("position", {"color": "red"}, ("near", (0.3, 0.6)), ("radius", POSITION_TOLERANCE),
                          ("away", True))]
    # a narrower disc for named places widens the margin of negated ones by as much
    g = compile_expr("red & ~position(0.3, 0.6)", reg, named_radius=0.04, **opts)
    reg.asked.clear()
    draw_chain_values(g, 4, seed=0)
    assert reg.asked == [("position", {"color": "red"}, ("near", (0.3, 0.6)), ("radius", pytest.approx(0.16)),
                          ("away", True))]
    assert "farther than 0.16 from the point" in g.groundings[0].describe()
    # a bare negated place is the prior's families with the place drawn away (the joint model found by it)
    g = compile_expr("~position(0.3, 0.6)", reg, **opts)
    assert [leaf.label for leaf in g.leaves] == ["position(drawn away from 0.3, 0.6)"]
    # two negated places: one place drawn away from both (their points one after the other)
    g = compile_expr("red & ~position(0.3, 0.6) & ~position(0.7, 0.2)", reg, **opts)
    assert [leaf.label for leaf in g.leaves] == ["color.red & position(drawn away from 0.3, 0.6; 0.7, 0.2)"]
    assert g.leaves[0].condition["position"] == Drawn((0.3, 0.6, 0.7, 0.2), away=True)
    assert [gr.how for gr in g.groundings] == ["away", "away"]
    assert "farther than 0.1 from each of the points (0.3, 0.6; 0.7, 0.2)" in g.groundings[0].describe()
    reg.asked.clear()
    draw_chain_values(g, 4, seed=0)
    assert reg.asked == [("position", {"color": "red"}, ("near", (0.3, 0.6, 0.7, 0.2)),
                          ("radius", POSITION_TOLERANCE), ("away", True))]
    # beside a named place whose disc lies outside the negated one (centres >= 0.2 apart): implied, dropped
    g = compile_expr("red & position(0.7, 0.7) & ~position(0.3, 0.6)", reg, **opts)
    assert [leaf.label for leaf in g.leaves] == ["color.red & position(0.7, 0.7)"]
    (gr,) = g.groundings
    assert gr.how == "implied" and gr.describe() == (
        "~position(0.3, 0.6): implied by position(0.7, 0.7) (no point is within the tolerance of both), so dropped")
    # the ratio form stays: with negation=ratio, beside a named place whose disc overlaps it, weighted
    for text, o in (("red & ~position(0.3, 0.6)", {"negation": "ratio"}),
                    ("red & position(0.4, 0.6) & ~position(0.3, 0.6)", {})):
        g = compile_expr(text, reg, **{**opts, **o})
        assert not any(leaf.condition.get("position") == Drawn((0.3, 0.6), away=True) for leaf in g.leaves), text
        assert any(gr.how == "ratio" for gr in g.groundings), text
    # a weighted negated place is the negated place (the sign carries the meaning), with a notice
    g = compile_expr("red & 2 * ~position(0.3, 0.6)", reg, **opts)
    assert [leaf.label for leaf in g.leaves] == ["color.red & position(drawn away from 0.3, 0.6)"]
    assert any("2 * ~position(0.3, 0.6): a weighted negation is lowered as the negation" in n for n in g.notices)
    assert ConceptRef("scenes", "position", params=(0.3, 0.6), drawn=True, away=True).qualified == \
        "position(drawn away from 0.3, 0.6)"


def test_scenes_draws_away_from_several_points_stay_outside_each_disc(scenes_registry):
    a = scenes_registry.value_draws("scenes", "position", {"shape": "square"}, 300, 5,
                                    near=(0.3, 0.3, 0.7, 0.7), radius=0.1, away=True)
    assert a.shape == (300, 2) and len(np.unique(a, axis=0)) == 300
    for point in ((0.3, 0.3), (0.7, 0.7)):
        assert np.linalg.norm(a - point, axis=1).min() > 0.1
    # both discs are left out: fewer draws fall in the two quadrants that hold them than in the others
    near_diag = ((a[:, 0] < 0.5) == (a[:, 1] < 0.5)).mean()
    assert 0.3 < near_diag < 0.5


def test_scenes_draws_away_from_a_point_stay_outside_the_tolerance(scenes_registry):
    reg = scenes_registry
    given = {"shape": "circle", "color": "red"}
    a = reg.value_draws("scenes", "position", given, 400, 3, near=(0.5, 0.5), radius=0.1, away=True)
    assert a.shape == (400, 2) and len(np.unique(a, axis=0)) == 400
    d = np.linalg.norm(a - [0.5, 0.5], axis=1)
    assert d.min() > 0.1
    # the rest of the data's spread: the same draws without `away`, those farther than 0.1, agree in mean
    b = reg.value_draws("scenes", "position", given, 4000, 4)
    b = b[np.linalg.norm(b - [0.5, 0.5], axis=1) > 0.1]
    assert np.abs(a.mean(0) - b.mean(0)).max() < 0.03


def test_a_negated_place_close_to_a_named_one_keeps_the_named_draws_away_from_it():
    """``red & position(0.4, 0.6) & ~position(0.3, 0.6)`` (centres 0.1 apart: a point can satisfy
    both) with named_positions="data": one place drawn within named_radius of (0.4, 0.6) and farther
    than 0.2 − named_radius from (0.3, 0.6), not a ratio-form repulsion (the sliver of the disc
    where the expression holds; it used to keep the ratio form)."""
    from conceptlang.syntax.semantics import POSITION_TOLERANCE

    reg = _DrawRegistry("implicit")
    opts = {"free_families": "data", "and_mode": "joint", "negation": "complement", "named_positions": "data"}
    g = compile_expr("red & position(0.4, 0.6) & ~position(0.3, 0.6)", reg, **opts)
    assert [leaf.label for leaf in g.leaves] == ["color.red & position(drawn near 0.4, 0.6 away from 0.3, 0.6)"]
    assert g.leaves[0].condition["position"] == Drawn((0.4, 0.6), avoid=(0.3, 0.6))
    assert "<drawn near 0.4, 0.6 away from 0.3, 0.6>" in g.explain()
    (gr,) = g.groundings
    assert gr.how == "avoid" and gr.describe() == (
        "~position(0.3, 0.6): lowered with the named place beside it, drawn per chain from the data where that place "
        f"holds and this one does not (position(0.4, 0.6): within {POSITION_TOLERANCE:g} of it and farther than "
        f"{POSITION_TOLERANCE:g} from this point)")
    reg.asked.clear()
    draw_chain_values(g, 4, seed=0)
    assert reg.asked == [("position", {"color": "red"}, ("near", (0.4, 0.6)), ("radius", POSITION_TOLERANCE),
                          ("avoid", (0.3, 0.6)), ("avoid_radius", POSITION_TOLERANCE))]
    # a narrower disc widens the margin kept from the negated point by as much
    g = compile_expr("red & position(0.4, 0.6) & ~position(0.3, 0.6)", reg, **{**opts, "named_radius": 0.04})
    reg.asked.clear()
    draw_chain_values(g, 4, seed=0)
    assert reg.asked == [("position", {"color": "red"}, ("near", (0.4, 0.6)), ("radius", 0.04),
                          ("avoid", (0.3, 0.6)), ("avoid_radius", pytest.approx(0.16)))]
    # two close negations: away from both; a far one beside them is implied and dropped
    g = compile_expr("red & position(0.4, 0.6) & ~position(0.3, 0.6) & ~position(0.5, 0.5) & ~position(0.8, 0.2)",
                     reg, **opts)
    assert [leaf.label for leaf in g.leaves] == ["color.red & position(drawn near 0.4, 0.6 away from 0.3, 0.6; 0.5, 0.5)"]
    assert sorted(gr.how for gr in g.groundings) == ["avoid", "avoid", "implied"]
    assert ConceptRef("scenes", "position", params=(0.4, 0.6), drawn=True, avoid=(0.3, 0.6, 0.5, 0.5)).qualified == \
        "position(drawn near 0.4, 0.6 away from 0.3, 0.6; 0.5, 0.5)"


def test_scenes_draws_near_a_point_and_away_from_a_close_one_lie_in_the_difference(scenes_registry):
    """value_draws(near=a, avoid=b): every draw within the radius of a and beyond avoid_radius of b,
    and the draws fill that region as the data does (the mean of the same draws without ``avoid``,
    kept where they are farther than 0.1 from b); near two points at once: within the radius of each."""
    reg = scenes_registry
    given = {"shape": "square", "size": "small"}
    a = reg.value_draws("scenes", "position", given, 300, 3, near=(0.4, 0.6), radius=0.1,
                        avoid=(0.3, 0.6), avoid_radius=0.1)
    assert a.shape == (300, 2) and len(np.unique(a, axis=0)) == 300
    assert np.linalg.norm(a - [0.4, 0.6], axis=1).max() <= 0.1
    assert np.linalg.norm(a - [0.3, 0.6], axis=1).min() > 0.1
    b = reg.value_draws("scenes", "position", given, 3000, 4, near=(0.4, 0.6), radius=0.1)
    b = b[np.linalg.norm(b - [0.3, 0.6], axis=1) > 0.1]
    assert np.abs(a.mean(0) - b.mean(0)).max() < 0.01
    both = reg.value_draws("scenes", "position", given, 200, 3, near=(0.4, 0.6, 0.3, 0.6), radius=0.1)
    assert np.linalg.norm(both - [0.4, 0.6], axis=1).max() <= 0.1 and np.linalg.norm(both - [0.3, 0.6], axis=1).max() <= 0.1


def test_a_weighted_place_shares_its_objects_point_in_every_chain(scenes_registry):
    """``2 * position(a) & red``: the place's extra share is a leaf of the place alone; in each
    chain it reads the point that the chain's joint leaf drew (one object, one point), through
    the DNF route's branches and where every chain uses every leaf."""
    from conceptlang.sampling.api import leaf_users

    g = compile_expr("2 * position(0.3, 0.3) & red", scenes_registry)
    alone = [i for i in g.drawn_leaves if set(g.leaves[i].condition) == {"position"}]
    joint = [i for i in g.drawn_leaves if len(g.leaves[i].condition) == 4]
    assert len(alone) == 1 and len(joint) == 6 and len(g.disjuncts) == 6
    n = 600
    branches = torch.arange(n) % 6
    values = draw_chain_values(g, n, seed=4, users=leaf_users(g, branches))
    coefs = torch.tensor([d.coefs for d in g.disjuncts])
    mine = values[(alone[0], "position")]
    for k in range(6):
        chains = torch.nonzero(branches == k).squeeze(1)
        leader = next(i for i in joint if coefs[k, i] != 0)
        assert coefs[k, alone[0]] != 0
        assert torch.equal(mine[chains], values[(leader, "position")][chains])
    # the points still differ from chain to chain, each within the named radius of the point
    assert len(torch.unique(mine, dim=0)) == n
    assert float(torch.hypot(mine[:, 0] - 0.3, mine[:, 1] - 0.3).max()) <= 0.095 + 1e-6
    # a single branch: every chain uses every leaf (users None)
    g = compile_expr("2 * position(0.3, 0.3) & red & circle & large", scenes_registry)
    assert len(g.drawn_leaves) == 2
    values = draw_chain_values(g, 50, seed=4)
    a, b = (values[(i, "position")] for i in sorted(g.drawn_leaves))
    assert torch.equal(a, b) and len(torch.unique(a, dim=0)) == 50
    # a place written twice is one object's place too; a place of another point is not tied
    g = compile_expr("position(0.3, 0.3) & position(0.3, 0.3) & red & circle & large", scenes_registry)
    values = draw_chain_values(g, 50, seed=4)
    a, b = (values[(i, "position")] for i in sorted(g.drawn_leaves))
    assert len(g.drawn_leaves) == 2 and torch.equal(a, b)
    g = compile_expr("red & position(0.3, 0.3) & circle & large | position(0.5, 0.5)", scenes_registry)
    values = draw_chain_values(g, 50, seed=4)
    points = {g.leaves[i].condition["position"].near for i in g.drawn_leaves}
    assert points == {(0.3, 0.3), (0.5, 0.5)}
    for i in g.drawn_leaves:
        (px, py), v = g.leaves[i].condition["position"].near, values[(i, "position")]
        assert float(torch.hypot(v[:, 0] - px, v[:, 1] - py).max()) <= 0.095 + 1e-6
