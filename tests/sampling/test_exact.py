"""Exact-answer tests: samplers on analytic Gaussian concepts against closed forms and quadrature.

Chains are vectorised over a 2-D "image", so thousands of chains run in about a second. Tolerances
are statistical (5 standard errors of the estimate) plus the sampler's known discretisation bias.
"""

from __future__ import annotations

import math

import pytest
import torch

from conceptlang.compiler import compile
from conceptlang.models.analytic import GAUSS_CONCEPTS, GAUSS_PRIOR, GaussianRegistry, product_of
from conceptlang.sampling import sample
from tests.sampling.gauss_helpers import box_density, box_moments, mean_tolerance, var_tolerance

RED = GAUSS_CONCEPTS["color"]["red"]
GREEN = GAUSS_CONCEPTS["color"]["green"]
CIRCLE = GAUSS_CONCEPTS["shape"]["circle"]
LARGE = GAUSS_CONCEPTS["size"]["large"]
N = 8000


def _stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = images.reshape(images.shape[0], 2).double()
    return x.mean(0), x.var(0)


def _check(images, mean, var, n, mean_bias=0.0, var_bias=0.0):
    got_mean, got_var = _stats(images)
    tol_m = mean_tolerance(var, n, mean_bias)
    tol_v = var_tolerance(n, var_bias)
    for k in range(2):
        assert abs(float(got_mean[k]) - mean[k]) < tol_m, (got_mean, mean, tol_m)
        assert abs(float(got_var[k]) / var - 1.0) < tol_v, (got_var, var, tol_v)


@pytest.mark.parametrize("sampler,steps,step,var_bias", [
    ("langevin", 800, 2e-4, 0.02),  # ULA's stationary variance is 1/(P(1 − hP/2)): +1% here
    ("mala", 250, 4e-3, 0.0),  # exact up to Monte Carlo error
])
def test_and_of_two_gaussians_samples_the_product(sampler, steps, step, var_bias):
    graph = compile("red & circle", GaussianRegistry())
    (mx, my), var = product_of([(1.0, RED), (1.0, CIRCLE)])
    res = sample(graph, N, seed=0, sampler=sampler, steps=steps, step_size=step, device="cpu")
    _check(res.images, (mx, my), var, N, var_bias=var_bias)
    if sampler == "mala":
        assert 0.3 < res.acceptance < 1.0


def test_weighted_and_sharpens_exactly():
    graph = compile("2.5 * red & circle", GaussianRegistry())
    (mx, my), var = product_of([(2.5, RED), (1.0, CIRCLE)])
    res = sample(graph, N, seed=1, sampler="mala", steps=250, step_size=3e-3, device="cpu")
    _check(res.images, (mx, my), var, N)


def test_grounded_not_shifts_mass_away_as_computed():
    # circle & ~large → E_circle − α E_large: a Gaussian with precision 1/s_c² − α/s_L², pushed
    # away from large's mean. Closed form, and the shift is visible against circle alone.
    alpha = 0.5
    graph = compile("circle & ~large", GaussianRegistry(), alpha=alpha)
    (mx, my), var = product_of([(1.0, CIRCLE), (-alpha, LARGE)])
    assert my < CIRCLE.mean[1]  # large sits at +y; the negation pushes the mean down
    res = sample(graph, N, seed=2, sampler="mala", steps=250, step_size=4e-3, device="cpu")
    _check(res.images, (mx, my), var, N)
    got_mean, _ = _stats(res.images)
    assert float(got_mean[1]) < CIRCLE.mean[1] - 0.05


def test_bare_not_is_grounded_by_the_prior_and_sampled_exactly():
    # ~large alone: E_prior − α E_large, proper because the prior is narrower than large/√α.
    alpha = 0.5
    graph = compile("~large", GaussianRegistry(), alpha=alpha)
    assert graph.groundings[0].grounded_by == "prior"
    (mx, my), var = product_of([(1.0, GAUSS_PRIOR), (-alpha, LARGE)])
    assert my < -0.8  # untruncated: pushed far below large's mean (+0.4)
    # The density is so wide that the box [-1, 1]² truncates it: compare with quadrature.
    qmean, qvar = box_moments(graph)
    res = sample(graph, N, seed=3, sampler="mala", steps=400, step_size=0.02, device="cpu")
    got_mean, got_var = _stats(res.images)
    for k in range(2):
        assert abs(float(got_mean[k]) - float(qmean[k])) < mean_tolerance(float(qvar[k]), N, z=6)
        assert abs(float(got_var[k]) / float(qvar[k]) - 1) < var_tolerance(N, z=6)
    assert float(got_mean[1]) < -0.3


def test_or_draws_branches_equally_and_samples_each_mode():
    graph = compile("red | green", GaussianRegistry())
    assert graph.route == "dnf" and [d.share for d in graph.disjuncts] == [0.5, 0.5]
    res = sample(graph, N, seed=4, sampler="mala", steps=400, step_size=4e-3, device="cpu")
    counts = res.branch_counts
    assert abs(counts[0] - N / 2) < 5 * math.sqrt(N / 4)
    x = res.images.reshape(N, 2)
    near_red = (x[:, 0] < 0).sum().item()
    # Each chain stays in the mode it drew: mass near each mode equals its branch count.
    red_idx = [i for i, d in enumerate(graph.disjuncts) if "red" in d.text][0]
    assert near_red == counts[red_idx]


def test_or_mass_follows_log_z_on_both_routes():
    # red and green have equal true Z, so log Z offsets (0, log 3) set the shares to 3:1. The DNF
    # route draws chains 3:1, and quadrature of the log-sum-exp energy puts 3/4 of the mass on red.
    graph = compile("red | green", GaussianRegistry(), log_z=(0.0, math.log(3.0)))
    shares = {("red" if "red" in d.text else "green"): d.share for d in graph.disjuncts}
    assert shares["red"] == pytest.approx(0.75, abs=1e-12)
    p, w = box_density(graph)
    assert float(w[p[:, 0] < 0].sum()) == pytest.approx(0.75, abs=1e-4)  # tails cross x = 0 (~1e-5)
    res = sample(graph, N, seed=5, sampler="mala", steps=300, step_size=4e-3, device="cpu")
    near_red = int((res.images.reshape(N, 2)[:, 0] < 0).sum())
    assert abs(near_red - 0.75 * N) < 5 * math.sqrt(N * 0.75 * 0.25)


def _box_z(g) -> float:
    """∫ over [-1, 1]² of exp(−‖x − μ‖²/(2s²)) = 2π s² · P(box) for N(μ, s²)."""
    def phi(t: float) -> float:
        return 0.5 * (1.0 + math.erf(t / math.sqrt(2.0)))

    p = 1.0
    for mu in g.mean:
        p *= phi((1 - mu) / g.scale) - phi((-1 - mu) / g.scale)
    return 2 * math.pi * g.scale**2 * p


def test_lse_energy_mass_follows_true_partition_functions():
    # Documents why the DNF route is the default: the plain log-sum-exp energy of red | large is
    # exp(−E_red) + exp(−E_large), so each branch's mass is its true Z (on the box), and the broad
    # branch dominates (≈ 0.86) — whereas the DNF route draws the branches equally.
    graph = compile("red | large", GaussianRegistry())
    from tests.sampling.gauss_helpers import grid

    pts, cell = grid()
    total, per_leaf = graph.energy(pts)
    red_col = [leaf.index for leaf in graph.leaves if leaf.label == "color.red"][0]
    mass_red = float(torch.exp(-per_leaf[:, red_col]).sum()) * cell
    mass_all = float(torch.exp(-total).sum()) * cell
    assert mass_all == pytest.approx(_box_z(RED) + _box_z(LARGE), rel=2e-3)
    assert mass_red / mass_all == pytest.approx(_box_z(RED) / (_box_z(RED) + _box_z(LARGE)), abs=2e-3)
    assert mass_red / mass_all < 0.2
    assert [d.share for d in graph.disjuncts] == [0.5, 0.5]


def _denoised_last_level(sig: float) -> tuple[tuple[float, float], float]:
    """red & circle at the last level σ, after the final Tweedie step: (mean, variance per axis)."""
    prec = sum(1.0 / (g.scale**2 + sig**2) for g in (RED, CIRCLE))
    mx = sum(g.mean[0] / (g.scale**2 + sig**2) for g in (RED, CIRCLE)) / prec
    my = sum(g.mean[1] / (g.scale**2 + sig**2) for g in (RED, CIRCLE)) / prec
    return (mx, my), (1 - sig**2 * prec) ** 2 / prec


@pytest.mark.parametrize("kind", ["noise_conditional", "implicit"])
def test_annealed_langevin_hits_the_exact_target(kind):
    # At the last level the composed target is N(m(σ), 1/P(σ)) with P(σ) = Σ 1/(s_i² + σ²); the
    # final Tweedie step x + σ²∇log p maps it to mean m, variance (1 − σ²P)²/P — exact answers.
    reg = GaussianRegistry(kind)
    graph = compile("red & circle", reg)
    sig = 0.01
    (mx, my), var = _denoised_last_level(sig)
    res = sample(graph, N // 2, seed=6, sampler="annealed", steps=1000, n_sigmas=10, sigma_max=1.0, sigma_min=sig,
                 step_size=2e-5, device="cpu")
    _check(res.images, (mx, my), var, N // 2, var_bias=0.01)


def test_restarts_keep_the_exact_target():
    # Restart sampling lifts the chains back to σ_j ≈ 0.13 with fresh noise and sweeps down again:
    # the law at the end is the same exact answer as without restarts.
    graph = compile("red & circle", GaussianRegistry("implicit"))
    sig = 0.01
    (mx, my), var = _denoised_last_level(sig)
    res = sample(graph, N // 2, seed=8, sampler="annealed", steps=1000, n_sigmas=10, sigma_max=1.0, sigma_min=sig,
                 step_size=2e-5, restarts=2, restart_sigma=0.2, device="cpu")
    assert res.settings["total_steps"] == 1000 + 2 * 6 * 100  # 6 of the 10 levels lie at or below 0.2
    _check(res.images, (mx, my), var, N // 2, var_bias=0.01)


def test_annealed_without_final_denoise_keeps_the_last_level_noise():
    reg = GaussianRegistry("noise_conditional")
    graph = compile("red & circle", reg)
    sig = 0.05
    prec = sum(1.0 / (g.scale**2 + sig**2) for g in (RED, CIRCLE))
    res = sample(graph, N, seed=7, sampler="annealed", steps=2000, n_sigmas=8, sigma_max=1.0, sigma_min=sig,
                 step_size=1e-4, final_denoise=False, device="cpu")
    _, got_var = _stats(res.images)
    assert float(got_var.mean()) == pytest.approx(1 / prec, rel=var_tolerance(2 * N, 0.02))


def test_implicit_models_compose_by_summing_scores():
    # ε-composition: the implicit registry's score of red & circle equals the explicit one's at σ.
    x = torch.randn(64, 2, 1, 1) * 0.4
    sigma = torch.full((64,), 0.2)
    g_imp = compile("red & ~large", GaussianRegistry("implicit"))
    g_nc = compile("red & ~large", GaussianRegistry("noise_conditional"))
    torch.testing.assert_close(g_imp.score(x, sigma), g_nc.score(x, sigma), rtol=1e-5, atol=1e-5)


def test_estimated_log_z_makes_the_dnf_route_sample_the_log_sum_exp_mixture():
    # red | large: the DNF shares become ∝ the estimated Z (the box masses), so the samples put the
    # same mass on red as quadrature of the log-sum-exp energy does (≈ 0.14 instead of 0.5).
    graph = compile("red | large", GaussianRegistry())
    res = sample(graph, N, seed=8, sampler="mala", steps=250, step_size=4e-3, device="cpu", log_z="estimate")
    exact = [_box_z(RED), _box_z(LARGE)]
    labels = [("red" if "red" in d.text else "large") for d in graph.disjuncts]
    for lab, lz in zip(labels, res.settings["log_z_estimates"]):
        assert lz == pytest.approx(math.log(exact[0] if lab == "red" else exact[1]), abs=0.03)
    share_red = res.settings["shares"][labels.index("red")]
    assert share_red == pytest.approx(exact[0] / sum(exact), abs=0.01)
    counts = res.branch_counts
    assert abs(counts[labels.index("red")] - share_red * N) < 5 * math.sqrt(N * share_red * (1 - share_red))
    assert res.settings["log_z"] == "estimated" and min(res.settings["log_z_ess"]) > 1000


def test_branch_draws_are_stratified_shares():
    from conceptlang.sampling.api import stratified_branches

    shares = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    first = []
    for seed in range(400):
        b = stratified_branches(shares, 32, torch.Generator().manual_seed(seed))
        counts = torch.bincount(b, minlength=4)
        assert ((counts - 32 * shares).abs() < 1.0 + 1e-9).all()  # n·share rounded up or down
        first.append(int(b[0]))
    # each chain's branch is still distributed as the shares (400 draws, 5σ bounds)
    for k, p in enumerate(shares.tolist()):
        assert abs(first.count(k) / 400 - p) < 5 * math.sqrt(p * (1 - p) / 400)


def test_stratified_branches_give_each_written_group_its_share():
    """Fewer chains than disjuncts: each group of disjuncts (an OR branch as written) still gets n
    times its share rounded up or down, each chain's disjunct is still distributed as the shares,
    and without groups (or with one) the draws are the same as before."""
    from conceptlang.sampling.api import stratified_branches

    gen = torch.Generator().manual_seed(0)
    shares = torch.rand(40, generator=gen, dtype=torch.float64)
    groups = ["a"] * 12 + ["b"] * 20 + ["c"] * 8
    group_share = {g: float(sum(s for s, h in zip(shares / shares.sum(), groups) if h == g)) for g in "abc"}
    ungrouped_worst = 0.0
    first = []
    for seed in range(300):
        b = stratified_branches(shares, 8, torch.Generator().manual_seed(seed), groups).tolist()
        plain = stratified_branches(shares, 8, torch.Generator().manual_seed(seed)).tolist()
        for g in "abc":
            assert abs(sum(groups[i] == g for i in b) - 8 * group_share[g]) < 1.0 + 1e-9
            ungrouped_worst = max(ungrouped_worst, abs(sum(groups[i] == g for i in plain) - 8 * group_share[g]))
        first.append(b[0])
        same = stratified_branches(shares, 8, torch.Generator().manual_seed(seed), ["x"] * 40).tolist()
        assert same == plain
    assert ungrouped_worst > 1.5  # the order without groups breaks groups apart
    p = float(shares[0] / shares.sum())
    assert abs(first.count(0) / 300 - p) < 5 * math.sqrt(p * (1 - p) / 300)


def test_stratified_branches_do_not_follow_the_branch_order():
    from conceptlang.sampling.api import stratified_branches

    # 32 equal branches in product order (the last of five yes/no families alternates), 16 chains:
    # systematic draws in that order would give every chain the same value of the last family
    shares = torch.full((32,), 1 / 32, dtype=torch.float64)
    odd = [int((stratified_branches(shares, 16, torch.Generator().manual_seed(s)) % 2).sum()) for s in range(200)]
    assert 6.5 < sum(odd) / len(odd) < 9.5 and min(odd) < 8 < max(odd)
