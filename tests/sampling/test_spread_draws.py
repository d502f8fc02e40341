"""Spread draws of the chains' own positions (conceptlang.sampling.draws).

A spread draw picks n values out of a pool of side² · n independent draws: one per cell of a k-d
tree of equal-count cells, each at the same relative place. Exactness: over the side² shared
places every pool value is picked exactly once, so each chain's value is one uniformly chosen draw
of the pool. Spread: the picks keep apart where independent draws collide.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from conceptlang.compiler import compile as compile_expr
from conceptlang.models.analytic import GaussianRegistry
from conceptlang.models.registry import load_registry
from conceptlang.sampling import sample
from conceptlang.sampling.api import draw_chain_values
from conceptlang.sampling.draws import SPREAD_POOL_MAX, SPREAD_SIDE, spread_draws, spread_picks, spread_side


def _nearest(points: np.ndarray) -> np.ndarray:
    """Each point's distance to its nearest other point."""
    return cKDTree(points).query(points, k=2)[0][:, 1]


@pytest.mark.parametrize("n,side,p", [(7, 3, 2), (1, 4, 2), (12, 2, 1), (9, 3, 3)])
def test_every_pool_value_is_picked_exactly_once_over_the_shared_places(n, side, p):
    pool = np.random.default_rng(n * 10 + p).normal(size=(side * side * n, p))
    picked = np.concatenate([spread_picks(pool, n, side, a, b) for a in range(side) for b in range(side)])
    assert np.array_equal(np.sort(picked), np.arange(side * side * n))
    # and one place picks n distinct values, one per cell
    assert len(set(spread_picks(pool, n, side, 1, 0).tolist())) == n


def test_the_cells_hold_equal_shares_and_the_picks_keep_apart():
    rng = np.random.default_rng(0)
    pool = rng.random((36 * 64, 2))  # uniform on the unit square
    got = spread_draws(pool, 64, 6, np.random.default_rng(1))
    assert got.shape == (64, 2) and all(any((row == pool).all(1)) for row in got)
    # 64 cells of equal count on the unit square: each quarter of x holds 16 of the picks
    assert np.histogram(got[:, 0], bins=4, range=(0, 1))[0].tolist() == [16, 16, 16, 16]
    near, iid = _nearest(got), _nearest(pool[:64])
    assert near.min() > 0.05 and near.mean() > 0.1  # a lattice of spacing 1/8 = 0.125, bent
    assert iid.min() < 0.02 and iid.mean() < 0.075  # independent draws: about 0.5/√64 = 0.0625


def test_the_side_shrinks_only_for_very_many_chains():
    assert spread_side(1) == spread_side(256) == spread_side(7281) == SPREAD_SIDE == 6
    assert spread_side(8192) == 5 and spread_side(10 ** 6) == 2
    assert spread_side(8192) ** 2 * 8192 <= SPREAD_POOL_MAX
    with pytest.raises(ValueError, match="needs a pool of 36 rows"):
        spread_picks(np.zeros((35, 2)), 1, 6, 0, 0)
    with pytest.raises(ValueError, match="slab and rank must be in 0..5"):
        spread_picks(np.zeros((36, 2)), 1, 6, 6, 0)


class _UniformDraws(GaussianRegistry):
    """The analytic registry drawing positions uniformly on the unit square, from the seed."""

    def value_draws(self, domain, family, given, n, seed, **where):
        if family != "position":
            return None
        return np.random.default_rng(seed).random((n, 2))


def test_each_chains_value_is_distributed_as_one_draw():
    reg = _UniformDraws("implicit")
    g = compile_expr("red", reg, free_families="data", and_mode="joint")
    (key,) = g.drawn_leaves.items()
    firsts = np.stack([draw_chain_values(g, 3, seed=s)[(key[0], "position")][0].numpy() for s in range(3000)])
    # chain 0 over 3000 seeds: uniform on the square (mean 1/2, variance 1/12, each quarter ≈ 1/4)
    assert firsts.mean(0) == pytest.approx([0.5, 0.5], abs=4 * (1 / 12 / 3000) ** 0.5)
    assert firsts.var(0) == pytest.approx([1 / 12, 1 / 12], rel=0.06)
    quarters = np.histogram2d(firsts[:, 0], firsts[:, 1], bins=2, range=[[0, 1], [0, 1]])[0] / 3000
    assert np.abs(quarters - 0.25).max() < 0.03


def test_spread_and_independent_draws_through_sample():
    reg = _UniformDraws("implicit")
    g = compile_expr("red", reg, free_families="data", and_mode="joint")
    leaf = next(iter(g.drawn_leaves))
    spread = draw_chain_values(g, 50, seed=4)[(leaf, "position")].numpy()
    indep = draw_chain_values(g, 50, seed=4, draws="independent")[(leaf, "position")].numpy()
    assert _nearest(spread).min() > 2 * _nearest(indep).min()
    # independent: exactly the drawer's first n; spread: n of its side² · n pool
    from conceptlang.sampling.api import DRAW_STREAM, _seed_for

    pool = reg.value_draws("gauss", "position", {}, 36 * 50, _seed_for(4, DRAW_STREAM, leaf, 0))
    assert np.array_equal(indep, pool[:50].astype(np.float32))
    assert all((np.abs(pool - row) < 1e-6).all(1).any() for row in spread)
    res = sample(g, 8, seed=0, sampler="dpmpp_2m", steps=3, device="cpu")
    assert res.settings["draws"] == "spread" and res.settings["drawn"] == ["position"]
    res = sample(g, 8, seed=0, sampler="dpmpp_2m", steps=3, device="cpu", draws="independent")
    assert res.settings["draws"] == "independent"


def test_a_named_disc_of_scenes_spread_over_256_chains():
    """`circle & red & large & position(0.5, 0.5)`: 256 centres in a disc of radius 0.1 (3.2 px).
    Independent draws put more than a quarter of them within 0.12 px of another (a near-duplicate
    image); spread draws almost none, inside the same disc and as evenly over it."""
    reg = load_registry()
    g = compile_expr("circle & red & large & position(0.5, 0.5)", reg, named_radius=0.1)
    leaf = next(iter(g.drawn_leaves))
    spread = draw_chain_values(g, 256, seed=2)[(leaf, "position")].numpy() * 32
    indep = draw_chain_values(g, 256, seed=2, draws="independent")[(leaf, "position")].numpy() * 32
    r_spread, r_indep = np.hypot(*(spread - 16).T), np.hypot(*(indep - 16).T)
    assert r_spread.max() <= 3.2 + 1e-4 and r_indep.max() <= 3.2 + 1e-4
    assert float((r_spread ** 2).mean()) == pytest.approx(3.2 ** 2 / 2, rel=0.04)  # uniform over the disc
    assert (_nearest(indep) < 0.12).mean() > 0.25
    assert (_nearest(spread) < 0.12).mean() < 0.03


def test_a_fixed_point_or_too_few_distinct_draws_keep_the_drawers_first_rows():
    class Fixed(GaussianRegistry):
        def value_draws(self, domain, family, given, n, seed, **where):
            return np.tile([0.25, 0.75], (n, 1)) if family == "position" else None

    g = compile_expr("red", Fixed("implicit"), free_families="data", and_mode="joint")
    got = draw_chain_values(g, 5, seed=0)[(next(iter(g.drawn_leaves)), "position")]
    assert torch.equal(got, torch.tensor([[0.25, 0.75]] * 5, dtype=torch.float32))


def test_a_branchs_chains_share_one_spread_draw():
    """In an OR, each branch's drawn leaf spreads its values over the chains of that branch (not
    over all n, of which the branch uses a random part)."""
    from conceptlang.sampling.api import leaf_users, stratified_branches

    reg = _UniformDraws("implicit")
    g = compile_expr("red | blue", reg, free_families="data", and_mode="joint")
    assert g.route == "dnf" and len(g.drawn_leaves) == 2
    shares = torch.tensor([d.share for d in g.disjuncts], dtype=torch.float64)
    branches = stratified_branches(shares, 128, torch.Generator().manual_seed(0))
    users = leaf_users(g, branches)
    assert sorted(int(v.numel()) for v in users.values()) == [64, 64]
    assert torch.equal(torch.sort(torch.cat(list(users.values()))).values, torch.arange(128))
    values = draw_chain_values(g, 128, seed=1, users=users)
    for leaf, chains in users.items():
        own = values[(leaf, "position")][chains].numpy()
        assert len(np.unique(own, axis=0)) == 64 and _nearest(own).min() > 0.04  # a lattice of 64
    indep = draw_chain_values(g, 128, seed=1, draws="independent", users=users)
    assert min(_nearest(indep[(leaf, "position")][c].numpy()).min() for leaf, c in users.items()) < 0.02
    table = torch.tensor([d.coefs for d in g.disjuncts], dtype=torch.float32)
    assert all(torch.equal(leaf_users(g, branches, table)[leaf], chains) for leaf, chains in users.items())
    assert leaf_users(g, None) is None
