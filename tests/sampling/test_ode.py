"""The probability-flow ODE solvers (EDM Heun, DPM-Solver++(2M) and (3M)) against exact answers.

For analytic Gaussian concepts the ε-composition of an AND or a grounded NOT is linear in x, so the
ODE dx/dσ = −σ·∇log p_σ(x) has a reference solution: in closed form for one concept, and for a
composition from RK4 with 1,500 steps in log σ (float64, error 4e-7, far below the solvers'). The
second-order solvers must converge to it at that order (doubling the steps quarters the error),
and the third-order multistep solver faster still.
"""

from __future__ import annotations

import math

import pytest
import torch

from conceptlang.compiler import compile
from conceptlang.errors import SamplingError
from conceptlang.models.analytic import GAUSS_CONCEPTS, GaussianRegistry
from conceptlang.sampling import sample
from conceptlang.sampling.api import _ChainTarget
from conceptlang.sampling.samplers import get_sigmas_karras, sample_dpmpp_2m, sample_dpmpp_3m, sample_heun
from tests.sampling.gauss_helpers import mean_tolerance, var_tolerance

RED = GAUSS_CONCEPTS["color"]["red"]
SOLVERS = {"heun": sample_heun, "dpmpp_2m": sample_dpmpp_2m}


def _target(text: str, chains: int) -> _ChainTarget:
    g = compile(text, GaussianRegistry("implicit"))
    coefs = torch.tensor([g.linear_coefs], dtype=torch.float64).expand(chains, -1)
    return _ChainTarget(g, coefs)


def _start(chains: int, sigma_max: float, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(chains, 2, 1, 1, generator=gen, dtype=torch.float64) * 2 - 1
    return u + sigma_max * torch.randn(chains, 2, 1, 1, generator=gen, dtype=torch.float64)


def _reference(target: _ChainTarget, x: torch.Tensor, sigma_max: float, sigma_min: float, m: int = 1500):
    """RK4 in u = log σ on dx/du = −σ²·score down to σ_min, then the Tweedie step D(x; σ_min)."""
    def f(x, u):
        sigma = math.exp(u)
        return -sigma**2 * target.score(x, torch.full((x.shape[0],), sigma, dtype=x.dtype))

    u0, u1 = math.log(sigma_max), math.log(sigma_min)
    h = (u1 - u0) / m
    for i in range(m):
        u = u0 + i * h
        k1 = f(x, u)
        k2 = f(x + h / 2 * k1, u + h / 2)
        k3 = f(x + h / 2 * k2, u + h / 2)
        k4 = f(x + h * k3, u + h)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x + sigma_min**2 * target.score(x, torch.full((x.shape[0],), sigma_min, dtype=x.dtype))


def test_karras_schedule():
    s = get_sigmas_karras(10.0, 0.01, 4, rho=7.0)
    hi, lo = 10.0 ** (1 / 7), 0.01 ** (1 / 7)
    expect = [(hi + i / 3 * (lo - hi)) ** 7 for i in range(4)] + [0.0]
    assert s.tolist() == pytest.approx(expect, rel=1e-12)
    assert s[0] == 10.0 and s[3] == 0.01 and s[4] == 0.0
    assert get_sigmas_karras(1.0, 0.1, 3, rho=1.0).tolist() == pytest.approx([1.0, 0.55, 0.1, 0.0])
    assert get_sigmas_karras(1.0, 0.1, 1).tolist() == pytest.approx([0.1, 0.0])


def test_single_concept_solution_is_exact_in_closed_form():
    # One Gaussian N(μ, s²): x(σ) − μ scales with √(s² + σ²); then D(x; σ_min) shrinks by s²/(s² + σ_min²).
    t = _target("red", 64)
    x0 = _start(64, 10.0)
    mu = torch.tensor(RED.mean, dtype=torch.float64).view(1, 2, 1, 1)
    s2, lo = RED.scale**2, 0.01
    exact = mu + (x0 - mu) * math.sqrt((s2 + lo**2) / (s2 + 100.0)) * s2 / (s2 + lo**2)
    torch.testing.assert_close(_reference(t, x0, 10.0, lo), exact, rtol=0, atol=1e-6)
    out = sample_heun(t, x0.clone(), sigmas=get_sigmas_karras(10.0, lo, 160), generator=torch.Generator(), disable=True)
    assert float((out - exact).abs().max()) < 1.5e-4  # measured 1.06e-4: second-order error


_REFERENCES: dict[str, tuple] = {}


@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("text", ["red", "red & circle", "circle & ~large"])
def test_solvers_converge_at_second_order(solver, text):
    if text not in _REFERENCES:  # shared by both solvers
        t = _target(text, 64)
        x0 = _start(64, 10.0)
        _REFERENCES[text] = (t, x0, _reference(t, x0, 10.0, 0.01))
    t, x0, ref = _REFERENCES[text]
    errs = []
    for n in (20, 40, 80):
        out = SOLVERS[solver](t, x0.clone(), sigmas=get_sigmas_karras(10.0, 0.01, n), generator=torch.Generator(),
                              disable=True)
        errs.append(float((out - ref).abs().max()))
    # Measured ratios 4.2–6.2 at 20→40 and 4.2–4.7 at 40→80: second order (4×) once the steps resolve
    # the schedule; a first-order method would give 2×.
    assert 4.0 < errs[0] / errs[1] < 6.5, errs
    assert 4.0 < errs[1] / errs[2] < 4.8, errs
    assert errs[2] < 3.1e-3, errs


@pytest.mark.parametrize("text", ["red", "red & circle", "circle & ~large"])
def test_third_order_multistep_beats_second_order_once_steps_resolve_the_schedule(text):
    if text not in _REFERENCES:
        t = _target(text, 64)
        x0 = _start(64, 10.0)
        _REFERENCES[text] = (t, x0, _reference(t, x0, 10.0, 0.01))
    t, x0, ref = _REFERENCES[text]

    def err(solver, n):
        out = solver(t, x0.clone(), sigmas=get_sigmas_karras(10.0, 0.01, n), generator=torch.Generator(), disable=True)
        return float((out - ref).abs().max())

    e2 = [err(sample_dpmpp_2m, n) for n in (40, 80)]
    e3 = [err(sample_dpmpp_3m, n) for n in (20, 40, 80)]
    # Measured: 3M's error 3.3–7.5× below 2M's at 40 steps and 4.2–41× at 80; halving the step
    # divides it by 3.7–26 (2M: 4.2–6.1), so it is at least second order and usually better.
    assert e3[1] < e2[0] / 3 and e3[2] < e2[1] / 4, (e2, e3)
    assert e3[0] / e3[1] > 5 and e3[1] / e3[2] > 3.5, e3
    assert e3[2] < 6.5e-4, e3


@pytest.mark.parametrize("solver,steps", [("heun", 40), ("dpmpp_2m", 80), ("dpmpp_3m", 40)])
def test_solvers_sample_the_exact_endpoint_distribution(solver, steps):
    # From x_T = u + σ_max·z (u uniform on the box), the exact ODE and final denoise give
    # μ + c·(x_T − μ), c = √((s² + σ_min²)/(s² + σ_max²))·s²/(s² + σ_min²): mean μ(1 − c), variance (1/3 + σ_max²)c².
    n = 8000
    res = sample(compile("red", GaussianRegistry("implicit")), n, seed=3, sampler=solver, steps=steps,
                 sigma_max=10.0, sigma_min=0.01, device="cpu")
    s2 = RED.scale**2
    c = math.sqrt((s2 + 1e-4) / (s2 + 100.0)) * s2 / (s2 + 1e-4)
    var = (1.0 / 3.0 + 100.0) * c**2
    x = res.images.reshape(n, 2).double()
    for k in range(2):
        assert abs(float(x[:, k].mean()) - RED.mean[k] * (1 - c)) < mean_tolerance(var, n)
        assert abs(float(x[:, k].var()) / var - 1) < var_tolerance(n)


def test_heun_churn_keeps_the_target():
    # Churn re-noises within the forward process's marginals, so the law at the end is still the
    # target's Tweedie-denoised N(μ, s⁴/(s² + σ_min²)); σ_max = 80 makes the start's mismatch
    # (uniform box, not N(μ, s² + σ_max²)) a mean bias below |μ|·s/σ_max = 7.5e-4.
    n = 8000
    # Churn's extra discretisation error needs more steps than the deterministic path: at 40 steps and
    # the largest churn the variance is 7–10% high, at 160 steps (γ = 0.25 per step) within 1.6%.
    res = sample(compile("red", GaussianRegistry("implicit")), n, seed=4, sampler="heun", steps=160,
                 sigma_max=80.0, sigma_min=0.01, s_churn=40.0, device="cpu")
    assert res.settings["s_churn"] == 40.0
    _assert_denoised_target_law(res.images, n)


def _assert_denoised_target_law(images: torch.Tensor, n: int) -> None:
    """The chains' law is the target's Tweedie-denoised N(μ, s⁴/(s² + σ_min²)), σ_min 0.01, up to
    sampling error and the start's mean bias from σ_max 80 (below 7.5e-4)."""
    s2 = RED.scale**2
    var = s2**2 / (s2 + 1e-4)
    x = images.reshape(n, 2).double()
    for k in range(2):
        assert abs(float(x[:, k].mean()) - RED.mean[k]) < mean_tolerance(var, n, bias=7.5e-4)
        assert abs(float(x[:, k].var()) / var - 1) < var_tolerance(n)


def test_churn_changes_the_path_and_is_seeded():
    g = compile("red & circle", GaussianRegistry("implicit"))
    kw = dict(sampler="heun", steps=10, sigma_max=10.0, device="cpu")
    plain = sample(g, 16, seed=1, **kw)
    a = sample(g, 16, seed=1, s_churn=5.0, **kw)
    b = sample(g, 16, seed=1, s_churn=5.0, **kw)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, plain.images)
    # s_tmax below every level: no churn anywhere, the deterministic path again
    c = sample(g, 16, seed=1, s_churn=5.0, s_tmax=1e-3, **kw)
    assert torch.equal(c.images, plain.images)


@pytest.mark.parametrize("solver,steps,evals", [("heun", 5, 9), ("dpmpp_2m", 7, 7), ("dpmpp_2m_sde", 7, 7),
                                                ("dpmpp_3m", 7, 7)])
def test_nfe_counts_network_rows_per_chain(solver, steps, evals):
    # "red & circle" in the sum mode: two leaves, so two rows per chain per evaluation; the
    # prior-corrected product adds the prior's row.
    for mode, rows in (("sum", 2), ("product", 3)):
        g = compile("red & circle", GaussianRegistry("implicit"), and_mode=mode)
        res = sample(g, 12, seed=0, sampler=solver, steps=steps, sigma_max=10.0, device="cpu")
        assert res.settings["score_evals"] == evals
        assert res.settings["nfe"] == evals * rows


def test_nfe_of_the_annealed_sampler_counts_its_final_denoise():
    g = compile("red", GaussianRegistry("implicit"))
    res = sample(g, 5, seed=0, sampler="annealed", steps=20, n_sigmas=10, device="cpu")
    assert res.settings["total_steps"] == 20 and res.settings["score_evals"] == 21 and res.settings["nfe"] == 21


def test_callback_sees_every_solver_step():
    seen = []
    sample(compile("red", GaussianRegistry("implicit")), 4, seed=0, sampler="dpmpp_2m", steps=6, sigma_max=10.0,
           device="cpu", callback=lambda d: seen.append((d["i"], d["sigma"])))
    assert [i for i, _ in seen] == list(range(6))
    assert [s for _, s in seen] == pytest.approx(get_sigmas_karras(10.0, 0.01, 6)[1:].tolist())


@pytest.mark.parametrize("kwargs,match", [
    ({"sigma_min": 2.0, "sigma_max": 1.0}, r"heun: sigma_min \(2\) must be below sigma_max \(1\)"),
    ({"rho": 0.0}, "heun: rho must be a finite number > 0, got 0.0"),
    ({"s_churn": -1.0}, "heun: s_churn must be a finite number ≥ 0, got -1.0"),
    ({"s_noise": float("inf")}, "heun: s_noise must be a finite number ≥ 0"),
    ({"clip_denoised": "no"}, "heun: clip_denoised must be true or false, got 'no'"),
    ({"steps": 0}, "heun: steps must be a positive integer, got 0"),
    ({"step_size": 0.1}, "the heun sampler has no setting"),
])
def test_bad_solver_settings_are_clear_errors(kwargs, match):
    with pytest.raises(SamplingError, match=match):
        sample(compile("red", GaussianRegistry("implicit")), 4, sampler="heun", device="cpu", **kwargs)


def test_clip_denoised_changes_the_path_only_where_estimates_leave_the_box():
    # The sum-mode AND of two concepts doubles the score at high σ, so its denoised estimate there is
    # about 2μ̄ − x, far outside the box: clipping changes the path. One concept's estimate at high
    # σ is about its mean, inside the box, and at low σ about x: clipping changes nothing.
    kw = dict(sampler="dpmpp_2m", steps=8, sigma_max=10.0, device="cpu")
    g = compile("red & circle", GaussianRegistry("implicit"))
    clipped = sample(g, 64, seed=0, clip_denoised=True, **kw)
    assert clipped.settings["clip_denoised"] is True
    assert not torch.equal(clipped.images, sample(g, 64, seed=0, **kw).images)
    one = compile("circle", GaussianRegistry("implicit"))
    assert torch.equal(sample(one, 64, seed=0, clip_denoised=True, **kw).images, sample(one, 64, seed=0, **kw).images)


# -- the evaluation budget (max_nfe) and the Langevin corrector ---------------------------------


@pytest.mark.parametrize("solver,mode,rows,steps,evals", [
    ("dpmpp_2m", "product", 3, 13, 13),  # ⌊40/3⌋ = 13 evaluations, one a step
    ("dpmpp_2m", "sum", 2, 20, 20),
    ("heun", "product", 3, 7, 13),  # 2·7 − 1 = 13 evaluations
    ("heun", "sum", 2, 10, 19),  # 20 evaluations allow 10 steps (19), not 11 (21)
])
def test_max_nfe_caps_the_steps_by_the_rows(solver, mode, rows, steps, evals):
    g = compile("red & circle", GaussianRegistry("implicit"), and_mode=mode)
    res = sample(g, 6, seed=0, sampler=solver, steps=30, max_nfe=40, sigma_max=10.0, device="cpu")
    assert res.settings["steps"] == steps and res.settings["score_evals"] == evals
    assert res.settings["nfe"] == evals * rows <= 40
    # the same chains as that step count given directly
    direct = sample(g, 6, seed=0, sampler=solver, steps=steps, sigma_max=10.0, device="cpu")
    assert torch.equal(res.images, direct.images) and direct.settings["max_nfe"] is None


def test_max_nfe_counts_the_corrector_and_explicit_steps_win():
    g = compile("red & circle", GaussianRegistry("implicit"), and_mode="product")  # 3 rows an evaluation
    kw = dict(sampler="dpmpp_2m", sigma_max=10.0, device="cpu")
    res = sample(g, 4, seed=0, max_nfe=40, corrector_steps=3, corrector_sigma=0.5, **kw)  # 20 steps by default
    assert res.settings["steps"] == 10 and res.settings["score_evals"] == 13 and res.settings["nfe"] == 39
    # steps that fit the budget are kept
    assert sample(g, 4, seed=0, steps=9, max_nfe=40, **kw).settings["nfe"] == 27
    # a DNF mixture: every disjunct here costs the same rows, so the budget is met exactly
    one_row = compile("red | green", GaussianRegistry("implicit"))
    res = sample(one_row, 8, seed=0, max_nfe=12, **kw)
    assert res.settings["steps"] == 12 and res.settings["nfe"] == 12
    # the registry's budget caps its own steps, and yields to an explicit step count unless given too
    g.sampler_settings = {"sampler": "dpmpp_2m", "steps": 20, "max_nfe": 40}
    assert sample(g, 4, seed=0, sigma_max=10.0, device="cpu").settings["nfe"] == 39
    assert sample(g, 4, seed=0, steps=20, sigma_max=10.0, device="cpu").settings["nfe"] == 60
    assert sample(g, 4, seed=0, steps=20, max_nfe=40, sigma_max=10.0, device="cpu").settings["nfe"] == 39


def test_langevin_corrector_has_the_exact_stationary_law():
    # Langevin x ← x + h·∇log p + √(2h)·z on N(μ, v), v = s² + σ²: x − μ is AR(1) with factor
    # 1 − h/v, so the law after k steps from a point x₀ is N(μ + (1 − h/v)^k (x₀ − μ), V_k) with
    # V_∞ = v/(1 − h/(2v)) (the discretisation's variance excess) and V_k = V_∞·(1 − (1 − h/v)^{2k}).
    from conceptlang.sampling.samplers import _correct

    n, sigma, step, k = 20000, 0.2, 0.3, 6
    t = _target("red", n)
    x0 = torch.zeros(n, 2, 1, 1, dtype=torch.float64)
    out = _correct("dpmpp_2m", t, x0, sigma, k, step, 1.0, False, torch.Generator().manual_seed(0), (0, 1, ""))
    v = RED.scale**2 + sigma**2
    h = step * sigma**2
    a = 1 - h / v
    var = v / (1 - h / (2 * v)) * (1 - a ** (2 * k))
    x = out.reshape(n, 2)
    for j in range(2):
        assert abs(float(x[:, j].mean()) - RED.mean[j] * (1 - a**k)) < mean_tolerance(var, n)
        assert abs(float(x[:, j].var()) / var - 1) < var_tolerance(n)


def test_corrector_runs_once_at_its_level_and_is_validated():
    g = compile("red", GaussianRegistry("implicit"))
    kw = dict(sampler="heun", steps=6, sigma_max=10.0, device="cpu")
    plain = sample(g, 8, seed=2, **kw)
    a = sample(g, 8, seed=2, corrector_steps=2, corrector_sigma=0.3, **kw)
    assert a.settings["score_evals"] == plain.settings["score_evals"] + 2 == 13
    assert not torch.equal(a.images, plain.images)
    assert torch.equal(a.images, sample(g, 8, seed=2, corrector_steps=2, corrector_sigma=0.3, **kw).images)
    with pytest.raises(SamplingError, match="heun: corrector_steps=2 needs corrector_sigma"):
        sample(g, 4, corrector_steps=2, **kw)
    with pytest.raises(SamplingError, match=r"corrector_sigma \(20\) must lie in \[sigma_min 0.01, sigma_max 10\]"):
        sample(g, 4, corrector_steps=1, corrector_sigma=20.0, **kw)
    with pytest.raises(SamplingError, match="heun: max_nfe must be a positive integer, got 0"):
        sample(g, 4, max_nfe=0, sampler="heun", device="cpu")


def test_rows_bound_holds_and_spares_the_probe_where_the_steps_fit(monkeypatch):
    from conceptlang.sampling import api

    for mode, text, bound, rows in (("product", "red & circle", 3, 3), ("sum", "red & circle", 3, 2),
                                    ("joint", "red & circle", 2, 1), ("product", "red | green", 2, 1),
                                    ("product", "circle & ~large", 3, 3)):
        g = compile(text, GaussianRegistry("implicit"), and_mode=mode)
        assert api.rows_bound(g) == bound
        assert api.rows_per_evaluation(g, {"sigma_max": 10.0, "sigma_min": 0.01}, torch.device("cpu")) == rows
    g = compile("red & circle", GaussianRegistry("implicit"), and_mode="product")

    def no_probe(*a, **k):
        raise AssertionError("probed")

    monkeypatch.setattr(api, "rows_per_evaluation", no_probe)
    kw = dict(sampler="dpmpp_2m", sigma_max=10.0, device="cpu", max_nfe=40)
    assert sample(g, 4, seed=0, steps=13, **kw).settings["nfe"] == 39  # 13 steps × at most 3 rows fit
    with pytest.raises(AssertionError, match="probed"):
        sample(g, 4, seed=0, steps=14, **kw)


# -- Restart sampling after the solve ----------------------------------------------------------


def test_a_one_jump_restart_is_the_denoised_estimate_of_the_lifted_chains():
    # From exact draws of N(μ, s²): lifted to σ_r they are N(μ, s² + σ_r²), and the jump [σ_r, 0]
    # returns D(x; σ_r) = μ + s²/(s² + σ_r²)·(x − μ) chain by chain.
    from conceptlang.sampling.samplers import SAMPLERS, restart_sigmas

    n, sr = 8, 0.3
    t = _target("red", n)
    gen = torch.Generator().manual_seed(4)
    mu = torch.tensor(RED.mean, dtype=torch.float64).view(1, 2, 1, 1)
    x0 = mu + RED.scale * torch.randn(n, 2, 1, 1, generator=gen, dtype=torch.float64)
    for name in ("heun", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m"):
        out = SAMPLERS[name].fn(t, x0, sigmas=torch.tensor([0.0], dtype=torch.float64), restarts=1,
                                restart_sigmas=restart_sigmas(sr, 0.01, 1, 7.0), generator=torch.Generator().manual_seed(9))
        z = torch.randn(x0.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
        want = mu + RED.scale**2 / (RED.scale**2 + sr**2) * (x0 + sr * z - mu)
        assert torch.allclose(out, want, atol=1e-12), name


def test_a_restart_solved_finely_keeps_the_exact_law():
    # Solved back down with many levels, the lifted chains follow the exact probability-flow map
    # x ↦ μ + (x − μ)·s/√(s² + σ_r²), which keeps N(μ, s²); twice in a row, with fresh noise each time.
    from conceptlang.sampling.samplers import SAMPLERS, restart_sigmas

    n, sr = 6, 0.5
    t = _target("red", n)
    mu = torch.tensor(RED.mean, dtype=torch.float64).view(1, 2, 1, 1)
    x0 = mu + RED.scale * torch.randn(n, 2, 1, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = SAMPLERS["heun"].fn(t, x0, sigmas=torch.tensor([0.0], dtype=torch.float64), restarts=2,
                              restart_sigmas=restart_sigmas(sr, 1e-4, 60, 7.0), generator=torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(3)
    want = x0
    scale = RED.scale / math.sqrt(RED.scale**2 + sr**2)
    for _ in range(2):
        want = mu + (want + sr * torch.randn(x0.shape, generator=gen, dtype=torch.float64) - mu) * scale
    assert torch.allclose(out, want, atol=2e-4)


def test_restarts_count_in_the_budget_and_are_validated():
    g = compile("red & circle", GaussianRegistry("implicit"), and_mode="product")  # 3 rows an evaluation
    kw = dict(sampler="dpmpp_2m", sigma_max=10.0, device="cpu")
    res = sample(g, 4, seed=0, max_nfe=40, restarts=2, restart_sigma=0.1, **kw)  # 2 one-jump passes
    assert res.settings["steps"] == 11 and res.settings["score_evals"] == 13 and res.settings["nfe"] == 39
    res = sample(g, 4, seed=0, max_nfe=40, restarts=1, restart_sigma=0.1, restart_steps=3, sampler="heun",
                 sigma_max=10.0, device="cpu")  # a heun pass of 3 levels: 5 evaluations
    assert res.settings["steps"] == 4 and res.settings["score_evals"] == 7 + 5 and res.settings["nfe"] == 36
    plain = sample(g, 4, seed=0, steps=8, **kw)
    again = sample(g, 4, seed=0, steps=8, restarts=1, restart_sigma=0.1, **kw)
    assert again.settings["score_evals"] == 9 and not torch.equal(plain.images, again.images)
    with pytest.raises(SamplingError, match="dpmpp_2m: restarts=1 needs restart_sigma"):
        sample(g, 4, restarts=1, **kw)
    with pytest.raises(SamplingError, match=r"restart_sigma \(0.005\) must lie in \(sigma_min 0.01, sigma_max 10\]"):
        sample(g, 4, restarts=1, restart_sigma=0.005, **kw)
    with pytest.raises(SamplingError, match="dpmpp_2m: restarts must be an integer ≥ 0, got -1"):
        sample(g, 4, restarts=-1, restart_sigma=0.1, **kw)
    with pytest.raises(SamplingError, match="dpmpp_2m: restart_steps must be a positive integer, got 0"):
        sample(g, 4, restarts=1, restart_sigma=0.1, restart_steps=0, **kw)


# -- DPM-Solver++(2M) SDE ----------------------------------------------------------------------


def test_sde_form_with_eta_zero_is_the_ode_solver_bit_for_bit():
    g = compile("red & circle", GaussianRegistry("implicit"))
    for churn in (0.0, 3.0):
        kw = dict(steps=9, sigma_max=10.0, s_churn=churn, device="cpu")
        ode = sample(g, 16, seed=1, sampler="dpmpp_2m", **kw)
        sde0 = sample(g, 16, seed=1, sampler="dpmpp_2m_sde", eta=0.0, **kw)
        assert torch.equal(ode.images, sde0.images)
    sde = sample(g, 16, seed=1, sampler="dpmpp_2m_sde", steps=9, sigma_max=10.0, device="cpu")
    assert sde.settings["eta"] == 1.0 and sde.settings["score_evals"] == 9 and sde.settings["nfe"] == 18  # two leaves
    assert not torch.equal(sde.images, ode.images)
    assert torch.equal(sde.images, sample(g, 16, seed=1, sampler="dpmpp_2m_sde", steps=9, sigma_max=10.0,
                                          device="cpu").images)


def test_sde_forgets_a_collapsed_start_where_the_ode_cannot():
    # Every chain starts at the same point x = 0 at σ 5, far from N(μ, s² + 25). The ODE maps one
    # point to one point (variance 0, and the mean off by the start's error); the reverse SDE's fresh
    # noise and contraction forget the start: by σ_min its law is the target's Tweedie-denoised
    # N(μ, s⁴/(s² + σ_min²)) (measured at 200 steps: variance ratio 0.997, mean error 2e-4; at 10
    # steps the variance is 11 % high). More noise than the reverse SDE's (η 2, the faces model's
    # setting) keeps the same marginals and converges to the same law.
    from conceptlang.sampling.samplers import sample_dpmpp_2m

    n = 20000
    t = _target("red", n)
    s2 = RED.scale**2
    var = s2**2 / (s2 + 1e-4)

    def run(eta, steps, eta_sigma_min=0.0):
        x0 = torch.zeros(n, 2, 1, 1, dtype=torch.float64)
        out = sample_dpmpp_2m(t, x0, sigmas=get_sigmas_karras(5.0, 0.01, steps), eta=eta, eta_sigma_min=eta_sigma_min,
                              generator=torch.Generator().manual_seed(0), disable=True)
        return out.reshape(n, 2)

    ode = run(0.0, 200)
    assert float(ode.var(0).max()) == 0.0 and abs(float(ode[0, 0]) - RED.mean[0]) > 0.01
    # η 2 down to σ 0.5, then the ODE: the noisy steps forget the start, the ODE keeps the marginal
    for eta, steps, tol, below in ((1.0, 200, var_tolerance(n), 0.0), (1.0, 10, None, 0.0),
                                   (2.0, 200, var_tolerance(n), 0.0), (2.0, 200, var_tolerance(n), 0.5)):
        x = run(eta, steps, below)
        for k in range(2):
            assert abs(float(x[:, k].mean()) - RED.mean[k]) < mean_tolerance(var, n)
            ratio = float(x[:, k].var()) / var
            if tol is not None:
                assert abs(ratio - 1) < tol
            else:
                assert 1.08 < ratio < 1.15  # the coarse schedule's first-order error, seen


def _sde_moments(sigmas: torch.Tensor, mu: float, s2: float, eta: float, s_noise: float, start_var: float
                 ) -> tuple[float, float]:
    """Mean and variance of one coordinate after :func:`sample_dpmpp_2m` with ``eta`` and ``s_noise``
    on the target N(μ, s²), from a start N(0, start_var): the solver's recursion is linear in the
    state v = (x, the last denoised estimate, 1), D(x; σ) = μ + s²/(s² + σ²)·(x − μ) exactly, so
    E[v vᵀ] propagates in closed form, the fresh noise adding (s_noise·σ'·√(1 − e^{−2ηh}))² to E[x²]."""
    m = torch.zeros(3, 3, dtype=torch.float64)
    m[0, 0], m[2, 2] = start_var, 1.0
    old_lam = None
    for i in range(len(sigmas) - 1):
        sigma, nxt = float(sigmas[i]), float(sigmas[i + 1])
        k = s2 / (s2 + sigma**2)
        d = torch.tensor([k, 0.0, (1 - k) * mu], dtype=torch.float64)  # D as a row acting on v
        lam = -math.log(sigma)
        t = torch.zeros(3, 3, dtype=torch.float64)
        t[1], t[2, 2] = d, 1.0
        if nxt == 0:
            t[0] = d
            noise = 0.0
        else:
            h = -math.log(nxt) - lam
            if old_lam is None:
                est = d
            else:
                r = (lam - old_lam) / h
                est = (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
            t[0] = -math.expm1(-(1 + eta) * h) * est
            t[0, 0] += nxt / sigma * math.exp(-eta * h)
            noise = (s_noise * nxt) ** 2 * -math.expm1(-2 * eta * h)
        m = t @ m @ t.T
        m[0, 0] += noise
        old_lam = lam
    mean = float(m[0, 2])
    return mean, float(m[0, 0]) - mean**2


@pytest.mark.parametrize("s_noise", [1.0, 0.8, 0.5])
def test_sde_noise_scale_gives_its_exact_law(s_noise):
    # s_noise < 1 draws less fresh noise than the SDE's marginals need: a colder chain, its variance
    # lowered by an amount the recursion gives exactly. 13 steps from σ 10, η 2 (the faces default's
    # schedule); the chains' mean and variance match the closed form.
    n = 20000
    t = _target("red", n)
    s2 = RED.scale**2
    sigmas = get_sigmas_karras(10.0, 0.01, 13)
    gen = torch.Generator().manual_seed(3)
    x0 = 10.0 * torch.randn(n, 2, 1, 1, generator=gen, dtype=torch.float64)
    x = sample_dpmpp_2m(t, x0, sigmas=sigmas, eta=2.0, s_noise=s_noise, generator=gen, disable=True).reshape(n, 2)
    for k in range(2):
        mean, var = _sde_moments(sigmas, RED.mean[k], s2, 2.0, s_noise, 100.0)
        assert abs(float(x[:, k].mean()) - mean) < mean_tolerance(var, n)
        assert abs(float(x[:, k].var()) / var - 1) < var_tolerance(n)
    # against the target's Tweedie-denoised law: 13 steps leave the full noise 13 % too wide (the
    # coarse schedule's excess), 0.8 of it 28 % too narrow, half of it 72 % too narrow
    ratio = _sde_moments(sigmas, RED.mean[0], s2, 2.0, s_noise, 100.0)[1] / (s2**2 / (s2 + 1e-4))
    assert ratio == pytest.approx({1.0: 1.128, 0.8: 0.722, 0.5: 0.282}[s_noise], abs=0.001)


def test_sde_noise_only_down_to_eta_sigma_min():
    # Steps that start below eta_sigma_min are the ODE's: above the schedule's top every step is,
    # bit for bit (the ODE draws no noise); below its last level none is.
    g = compile("red & circle", GaussianRegistry("implicit"))
    kw = dict(steps=9, sigma_max=10.0, device="cpu")
    ode = sample(g, 16, seed=1, sampler="dpmpp_2m", **kw).images
    sde = sample(g, 16, seed=1, sampler="dpmpp_2m_sde", eta=2.0, **kw).images
    assert torch.equal(sample(g, 16, seed=1, sampler="dpmpp_2m_sde", eta=2.0, eta_sigma_min=11.0, **kw).images, ode)
    assert torch.equal(sample(g, 16, seed=1, sampler="dpmpp_2m_sde", eta=2.0, eta_sigma_min=0.005, **kw).images, sde)
    part = sample(g, 16, seed=1, sampler="dpmpp_2m_sde", eta=2.0, eta_sigma_min=1.0, **kw).images
    assert not torch.equal(part, ode) and not torch.equal(part, sde)
    with pytest.raises(SamplingError, match="eta_sigma_min must be a finite number ≥ 0"):
        sample(g, 4, sampler="dpmpp_2m_sde", eta_sigma_min=-1.0, device="cpu")


def test_sde_samples_the_exact_law_through_sample():
    n = 8000
    res = sample(compile("red", GaussianRegistry("implicit")), n, seed=4, sampler="dpmpp_2m_sde", steps=120,
                 sigma_max=80.0, sigma_min=0.01, device="cpu")
    _assert_denoised_target_law(res.images, n)


def test_sde_settings_are_validated_and_its_own():
    g = compile("red", GaussianRegistry("implicit"))
    with pytest.raises(SamplingError, match="dpmpp_2m_sde: eta must be a finite number ≥ 0, got -0.5"):
        sample(g, 4, sampler="dpmpp_2m_sde", eta=-0.5, device="cpu")
    with pytest.raises(SamplingError, match="the dpmpp_2m sampler has no setting"):
        sample(g, 4, sampler="dpmpp_2m", eta=1.0, device="cpu")
    # a registry tuned for the SDE form: its step count carries over to the ODE solvers, its eta does not
    g.sampler_settings = {"sampler": "dpmpp_2m_sde", "steps": 7, "eta": 0.5}
    res = sample(g, 4, seed=0, sampler="heun", sigma_max=10.0, device="cpu")
    assert res.settings["steps"] == 7 and res.settings["registry_keys_not_used"] == ["eta"]
    assert sample(g, 4, seed=0, sigma_max=10.0, device="cpu").settings["eta"] == 0.5


def test_the_budget_counts_each_evaluation_at_its_noise_level():
    """``2 * red & circle`` with the weights limited to σ ≥ 0.5: an evaluation costs a chain 3 rows
    above that level (the joint leaf, red's extra share, the prior) and 1 below. The budget takes
    the most steps whose evaluations, each counted at its level, fit ``max_nfe`` (it used to count
    every evaluation at 3 rows: 6 steps in 20 rows where 10 fit); the measured rows equal that
    count exactly, and one more step would pass the budget."""
    from conceptlang.sampling import api
    from conceptlang.sampling.samplers import SAMPLERS, get_sigmas_karras
    from tests.compiler.test_weights_above import FloorRegistry

    g = compile("2 * red & circle", FloorRegistry({}, 0.5, kind="implicit"), and_mode="joint")
    cpu = torch.device("cpu")
    assert api._probe_rows(g, cpu, [5.0, 0.6, 0.4, 0.1], api._probe_conditions(g, cpu)) == [[3, 3, 1, 1]]

    def rows(name, n):
        sig = get_sigmas_karras(10.0, 0.01, n, 7.0).tolist()
        levels = sig[:-1] + (sig[1:-1] if name == "heun" else [])
        return sum(3 if v >= 0.5 else 1 for v in levels)

    for name, budget, steps in (("dpmpp_2m", 20, 10), ("dpmpp_2m", 40, 19), ("heun", 20, 5), ("heun", 40, 10)):
        r = sample(g, 2, seed=0, sampler=name, steps=20, sigma_max=10.0, device="cpu", max_nfe=budget)
        assert r.settings["steps"] == steps and r.settings["nfe"] == rows(name, steps) <= budget
        assert rows(name, steps + 1) > budget
        old = SAMPLERS[name].budget_steps({"max_nfe": budget, "steps": 20, "corrector_steps": 0, "restarts": 0,
                                           "restart_steps": 1}, 3)
        assert old < steps
