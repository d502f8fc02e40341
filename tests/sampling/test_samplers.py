"""Sampler mechanics: settings, determinism, devices, NaN detection, frames, callbacks."""

from __future__ import annotations

import math

import pytest
import torch

from conceptlang.compiler import compile
from conceptlang.errors import CompileError, SamplingError
from conceptlang.models.analytic import GaussianConceptModel, GaussianRegistry
from conceptlang.sampling import SAMPLERS, get_sigmas_geometric, resolve_device, resolve_settings, sample


def graph(text="red & circle", kind="explicit", **opts):
    return compile(text, GaussianRegistry(kind), **opts)


def test_same_seed_same_images_on_cpu():
    g = graph("(red & circle) | ~large")
    a = sample(g, 64, seed=11, steps=30, device="cpu")
    b = sample(g, 64, seed=11, steps=30, device="cpu")
    c = sample(g, 64, seed=12, steps=30, device="cpu")
    assert torch.equal(a.images, b.images) and torch.equal(a.branches, b.branches)
    assert not torch.equal(a.images, c.images)


def test_branch_draws_do_not_depend_on_batch_size():
    g = graph("red | green | blue")
    a = sample(g, 90, seed=3, steps=5, device="cpu")
    b = sample(g, 90, seed=3, steps=5, device="cpu", batch_size=7)
    assert torch.equal(a.branches, b.branches)
    assert b.images.shape == (90, 2, 1, 1) and b.settings["batch_size"] == 7


def test_images_are_in_the_data_range_on_cpu():
    res = sample(graph("~large"), 32, seed=0, steps=50, step_size=0.05, device="cpu")
    assert res.images.device.type == "cpu" and res.images.dtype == torch.float32
    assert float(res.images.abs().max()) <= 1.0


def test_settings_precedence_user_over_registry_over_defaults():
    reg = GaussianRegistry(settings={"step_size": 3e-4, "steps": 77, "unused_key": 1})
    g = compile("red", reg)
    name, s, ignored = resolve_settings(g, None, None, {})
    assert name == "langevin" and s["step_size"] == 3e-4 and s["steps"] == 77
    assert "unused_key" in ignored
    name, s, _ = resolve_settings(g, None, 12, {"step_size": 1e-3})
    assert s["steps"] == 12 and s["step_size"] == 1e-3
    res = sample(g, 4, seed=0, device="cpu", steps=3)
    assert res.settings["total_steps"] == 3 and res.settings["registry_keys_not_used"] == ["sigma_max", "sigma_min",
                                                                                          "n_sigmas", "unused_key"]


def test_registry_settings_tuned_for_an_ode_solver_do_not_carry_to_annealed_langevin():
    tuned = {"sampler": "dpmpp_2m", "steps": 13, "sigma_max": 10.0, "sigma_min": 0.02, "s_churn": 3.0,
             "max_nfe": 40, "restarts": 2, "restart_sigma": 0.03}
    g = compile("red", GaussianRegistry(kind="noise_conditional", settings=tuned))
    name, s, ignored = resolve_settings(g, None, None, {})
    assert name == "dpmpp_2m" and (s["steps"], s["restarts"], s["s_churn"], s["max_nfe"]) == (13, 2, 3.0, 40)
    # another ODE solver: the same family, every tuned setting carries
    name, s, ignored = resolve_settings(g, "heun", None, {})
    assert (s["steps"], s["restarts"], s["restart_sigma"], s["max_nfe"]) == (13, 2, 0.03, 40)
    assert sorted(ignored) == ["n_sigmas", "step_size"]  # the analytic registry's own annealed settings
    # annealed Langevin: its own step count and no restarts; only the noise range is the model's
    name, s, ignored = resolve_settings(g, "annealed", None, {})
    annealed = SAMPLERS["annealed"].defaults
    assert (s["steps"], s["restarts"], s["step_size"]) == (annealed["steps"], 0, annealed["step_size"])
    assert (s["sigma_max"], s["sigma_min"]) == (10.0, 0.02)
    assert sorted(ignored) == ["max_nfe", "n_sigmas", "restart_sigma", "restarts", "s_churn", "step_size", "steps"]
    res = sample(g, 4, seed=0, device="cpu", sampler="annealed")
    assert res.settings["total_steps"] == annealed["steps"] and res.settings["restarts"] == 0
    # what the user names still wins
    name, s, _ = resolve_settings(g, "annealed", 30, {"restarts": 1, "restart_sigma": 0.1})
    assert (s["steps"], s["restarts"], s["restart_sigma"]) == (30, 1, 0.1)


def test_annealed_spreads_steps_over_levels():
    g = graph(kind="noise_conditional")
    res = sample(g, 4, seed=0, device="cpu", steps=5, n_sigmas=10)
    # Fewer steps than levels: the budget wins, with fewer levels between the same end points.
    assert res.settings["sampler"] == "annealed" and res.settings["total_steps"] == 5
    assert res.settings["n_sigmas"] == 5
    res = sample(g, 4, seed=0, device="cpu", steps=40, n_sigmas=10)
    assert res.settings["total_steps"] == 40
    res = sample(g, 4, seed=0, device="cpu", steps=5, n_sigmas=10, steps_per_sigma=2)
    assert res.settings["total_steps"] == 20  # an explicit per-level count wins


def test_restart_passes_resweep_the_low_levels():
    # σ from 1 to 0.01 in 10 levels: 0.129 is the first level ≤ 0.2, so each restart re-runs the
    # last 6 levels; the callback sees every step and the noise levels of each pass in order.
    seen = []
    res = sample(graph(kind="noise_conditional"), 4, seed=0, device="cpu", sampler="annealed", n_sigmas=10,
                 sigma_max=1.0, sigma_min=0.01, steps_per_sigma=2, restarts=2, restart_sigma=0.2,
                 callback=lambda d: seen.append((d["i"], d["sigma"])))
    assert res.settings["total_steps"] == (10 + 2 * 6) * 2
    assert [i for i, _ in seen] == list(range(44))
    levels = get_sigmas_geometric(1.0, 0.01, 10).tolist()
    expect = [s for s in levels for _ in range(2)] + 2 * [s for s in levels[4:] for _ in range(2)]
    assert [s for _, s in seen] == pytest.approx(expect)
    plain = sample(graph(kind="noise_conditional"), 4, seed=0, device="cpu", sampler="annealed", n_sigmas=10,
                   sigma_max=1.0, sigma_min=0.01, steps_per_sigma=2)
    assert plain.settings["total_steps"] == 20 and not torch.equal(plain.images, res.images)


@pytest.mark.parametrize("clip", [False, True])
def test_clip_denoised_steps_to_the_clipped_tweedie_estimate(clip):
    # One level σ = 0.5, step_size σ², no noise: each step lands exactly on the denoised estimate
    # D(x) = x + σ²·∇log p_σ(x), clipped to [-1, 1] when clip_denoised is on. The chains start
    # with noise 3, so the first estimates lie outside the box and clipping changes the path.
    g = graph(kind="noise_conditional")
    xs = []
    sample(g, 64, seed=0, device="cpu", sampler="annealed", n_sigmas=1, sigma_max=3.0, sigma_min=0.5,
           steps_per_sigma=3, step_size=0.25, noise_scale=0.0, final_denoise=False, clip_denoised=clip,
           callback=lambda d: xs.append(d["x"].clone()))
    sig = torch.full((64,), 0.5)
    outside = 0
    for before, after in zip(xs, xs[1:]):
        d = before + 0.25 * g.score(before, sig)
        outside += int((d.abs() > 1).sum())
        torch.testing.assert_close(after, d.clamp(-1, 1) if clip else d)
    assert outside > 0  # the check is not vacuous: some estimates left the box


def test_geometric_schedule():
    s = get_sigmas_geometric(1.0, 0.01, 5)
    torch.testing.assert_close(s, torch.tensor([1.0, 10 ** -0.5, 0.1, 10 ** -1.5, 0.01]))
    assert get_sigmas_geometric(1.0, 0.01, 1).tolist() == [pytest.approx(0.01)]


@pytest.mark.parametrize("kwargs,match", [
    ({"sampler": "euler"}, "unknown sampler 'euler'; choose one of langevin, annealed, mala"),
    ({"step_size": -1.0}, "step_size must be a finite number > 0"),
    ({"steps": 0}, "steps must be a positive integer"),
    ({"bogus": 3}, "has no setting"),
    ({"noise_scale": float("nan")}, "noise_scale"),
    ({"device": "tpu"}, "unknown device"),
    ({"sampler": "langevin", "restarts": 1}, "has no setting"),
])
def test_bad_settings_are_clear_errors(kwargs, match):
    with pytest.raises(SamplingError, match=match):
        sample(graph(), 4, **{"device": "cpu", **kwargs})


@pytest.mark.parametrize("kwargs,match", [
    ({"restarts": -1}, "annealed: restarts must be an integer ≥ 0, got -1"),
    ({"restarts": 1}, "annealed: restarts=1 needs restart_sigma"),
    ({"restarts": 1, "restart_sigma": 3.0}, r"annealed: restart_sigma \(3\) must lie in \(sigma_min 0.01, sigma_max 1\]"),
    ({"restarts": 1, "restart_sigma": 0.0}, "restart_sigma must be a finite number > 0"),
    ({"clip_denoised": "yes"}, "annealed: clip_denoised must be true or false, got 'yes'"),
])
def test_bad_restart_settings_are_clear_errors(kwargs, match):
    with pytest.raises(SamplingError, match=match):
        sample(graph(kind="noise_conditional"), 4, device="cpu", sampler="annealed", sigma_max=1.0, sigma_min=0.01,
               **kwargs)


def test_bad_n_seed_batch():
    g = graph()
    for kw in ({"n": 0}, {"n": 2, "seed": -1}, {"n": 2, "batch_size": 0}):
        with pytest.raises(SamplingError):
            sample(g, device="cpu", **kw)


def test_sampler_capabilities_are_checked():
    with pytest.raises(CompileError, match="mala sampler needs explicit energies"):
        sample(graph(kind="implicit"), 4, sampler="mala", device="cpu")
    with pytest.raises(CompileError, match="annealed sampler needs noise-conditional"):
        sample(graph(kind="explicit"), 4, sampler="annealed", device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_missing_cuda_is_an_error():
    with pytest.raises(SamplingError, match="no CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto").type in ("cpu", "mps")


class _NanAfter(GaussianConceptModel):
    """Scores go NaN from the 4th call on: the sampler must stop and name the step."""

    def score(self, x, cond, sigma):
        out = super().score(x, cond, sigma)
        return out * float("nan") if self.forward_calls > 3 else out


@pytest.mark.filterwarnings("ignore:the langevin sampler runs at one noise level")
@pytest.mark.parametrize("sampler,step", [("langevin", 3), ("annealed", 3), ("dpmpp_2m", 3),
                                          ("heun", 1)])  # Heun: two evaluations a step
def test_non_finite_values_raise_with_the_step(sampler, step):
    reg = GaussianRegistry("noise_conditional")
    bad = _NanAfter("nan-model", "noise_conditional", None)
    reg.models = {k: bad for k in reg.models}
    reg.prior_model = bad
    g = compile("red & circle", reg)
    with pytest.raises(SamplingError, match=rf"{sampler} sampler: non-finite score at step {step} of"):
        sample(g, 8, seed=0, sampler=sampler, steps=20, device="cpu")


def test_mala_diverging_step_is_caught_or_rejected():
    # A huge step makes every proposal leave the box: MALA rejects, never returns NaN.
    res = sample(graph(), 16, seed=0, sampler="mala", steps=10, step_size=50.0, device="cpu")
    assert res.acceptance == 0.0 and torch.isfinite(res.images).all()


def test_callback_and_frames():
    seen = []
    res = sample(graph(), 20, seed=0, steps=12, device="cpu", frames=4, callback=lambda d: seen.append(d["i"]))
    assert seen == list(range(12))
    assert len(res.frames) == 16  # first 16 chains
    assert res.frames[0].shape == (5, 2, 1, 1)  # 4 snapshots + the final state


def test_implicit_models_sample_with_langevin_at_a_fixed_sigma():
    with pytest.warns(UserWarning, match=r"one noise level \(sigma 0.01\).*\(annealed\)"):
        res = sample(graph(kind="implicit"), 8, seed=0, sampler="langevin", steps=10, step_size=1e-4, device="cpu")
    assert res.settings["sigma"] == 0.01


@pytest.mark.parametrize("kind,tuned,warns", [
    ("noise_conditional", "dpmpp_2m", True),   # tuned to anneal: one level from noise is off the data
    ("implicit", "annealed", True),
    ("noise_conditional", "langevin", False),  # the registry's own sampler runs one level too
    ("explicit", "dpmpp_2m", False),           # a plain energy has no noise levels to anneal over
])
def test_a_fixed_level_sampler_on_models_sampled_by_annealing_warns(kind, tuned, warns):
    import warnings

    g = compile("red", GaussianRegistry(kind=kind, settings={"sampler": tuned, "sigma_max": 10.0, "sigma_min": 0.02}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = sample(g, 2, seed=0, sampler="langevin", steps=1, step_size=1e-4, device="cpu")
        resolve_settings(g, "langevin", None, {})  # resolving settings alone (the CLI's checks) does not warn
    assert res.settings["sampler"] == "langevin"
    got = [str(w.message) for w in caught]
    if warns:
        others = tuned if tuned == "annealed" else f"{tuned} or annealed"
        assert got == [f"the langevin sampler runs at one noise level (sigma 0.02), starting from noise, but these "
                       f"models' registry samples them by annealing from high noise ({tuned}), and a score learned "
                       f"at a low level is unreliable far from the data: expect images off it; sample with {others}"]
    else:
        assert got == []


def test_registry_and_compiler_agree_on_sampler_names():
    from conceptlang.compiler import SAMPLER_NEEDS

    assert list(SAMPLERS) == list(SAMPLER_NEEDS)


def test_ula_bias_matches_theory_for_a_large_step():
    # For a Gaussian of precision P, ULA with step h and noise √(2h) has stationary variance
    # 1/(P(1 − hP/2)): the sampler implements exactly that recursion.
    g = compile("square", GaussianRegistry())  # s = 0.1 → P = 100
    h = 0.01
    res = sample(g, 8000, seed=5, steps=300, step_size=h, device="cpu")
    var = float(res.images.reshape(-1, 2).double().var(0).mean())
    expected = 1.0 / (100 * (1 - h * 100 / 2))
    assert var == pytest.approx(expected, rel=5 * math.sqrt(2 / 16000))


@pytest.mark.gpu
def test_cuda_sampling_matches_cpu_statistics():
    g = graph("red & circle")
    cpu = sample(g, 4000, seed=0, sampler="mala", steps=200, step_size=4e-3, device="cpu")
    gpu = sample(g, 4000, seed=0, sampler="mala", steps=200, step_size=4e-3, device="cuda")
    assert gpu.images.device.type == "cpu" and gpu.settings["device"].startswith("cuda")
    again = sample(g, 4000, seed=0, sampler="mala", steps=200, step_size=4e-3, device="cuda")
    assert torch.equal(gpu.images, again.images)  # same device, same seed: identical
    m_cpu, m_gpu = cpu.images.reshape(-1, 2).mean(0), gpu.images.reshape(-1, 2).mean(0)
    assert (m_cpu - m_gpu).abs().max() < 5 * math.sqrt(2 * 0.0106 / 4000)
