"""Samplers, one plain function each, chosen by name from :data:`SAMPLERS`: Langevin (plain,
annealed over noise levels, Metropolis-adjusted), probability-flow ODE solvers (EDM's Heun,
DPM-Solver++(2M) and (3M)) and the 2M solver's reverse-time SDE form for noise-conditional models.

Each sampler is ``sample_x(target, x, *, generator, callback=None, disable=None, **settings)``
(the k-diffusion shape): ``target`` gives the score ∇ₓ log p (and, for MALA, the energy) of the
composition for the chains in ``x``; ``callback`` gets ``{"i", "x", "sigma"}`` after every step
(chain frames for GIFs use it); ``disable`` turns the tqdm progress bar off. The ODE solvers use
the score through the denoised estimate D(x; σ) = x + σ²·∇log p_σ(x), which for a composition
of ε-predicting models (AND, NOT, weighted sums: linear in the leaves' predictions) is the same
linear combination of the leaves' denoised estimates.

Every step checks for NaN/inf and raises :class:`SamplingError` naming the step, so a diverging
chain never leaves the sampler silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
import torch
from tqdm.auto import trange

from conceptlang.errors import SamplingError


class Target(Protocol):
    def score(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        """(B, C, H, W) → ∇ₓ log p, (B, C, H, W)."""

    def energy_and_score(self, x: torch.Tensor, sigma: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) → (E (B,), ∇ₓ log p (B, C, H, W)); explicit energies only."""


Callback = Callable[[dict[str, Any]], None]


def get_sigmas_geometric(sigma_max: float, sigma_min: float, n: int) -> torch.Tensor:
    """``n`` noise levels from ``sigma_max`` down to ``sigma_min``, equally spaced in log σ: (n,)."""
    if n == 1:
        return torch.tensor([float(sigma_min)])
    return torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), n))


def _randn(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


_ODE_HINT = "try more steps, a smaller sigma_max or smaller weights"  # the ODE solvers' non-finite hint


def _check_finite(name: str, what: str, t: torch.Tensor, step: int, total: int, hint: str) -> None:
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t.reshape(t.shape[0], -1))).any(dim=1).sum())
        raise SamplingError(
            f"{name} sampler: non-finite {what} at step {step} of {total} in {bad} of {t.shape[0]} chain(s); {hint}"
        )


def _full(x: torch.Tensor, value: float | None) -> torch.Tensor | None:
    return None if value is None else torch.full((x.shape[0],), float(value), device=x.device, dtype=x.dtype)


def _step(name: str, target: Target, x: torch.Tensor, sig: torch.Tensor | None, h: float, noise: float, *,
          clamp: bool, adjust: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
          generator: torch.Generator, at: tuple[int, int, str], callback: Callback | None,
          sigma: float | None) -> torch.Tensor:
    """One Langevin step x + h·score + noise·z, checked for NaN/inf; ``adjust(score, x)`` may reshape
    the score first (clipping). ``at`` = (step, total, hint) for the error message."""
    i, total, hint = at
    s = target.score(x, sig).detach()  # (B, C, H, W)
    _check_finite(name, "score", s, i, total, hint)
    if adjust is not None:
        s = adjust(s, x)
    x = x + h * s + noise * _randn(x, generator)
    if clamp:
        x = x.clamp(-1.0, 1.0)
    _check_finite(name, "values", x, i, total, hint)
    if callback is not None:
        callback({"i": i, "x": x, "sigma": sigma})
    return x


def sample_langevin(target: Target, x: torch.Tensor, *, steps: int, step_size: float,
                    noise_scale: float | None = None, sigma: float | None = None, clamp: bool = True,
                    grad_clip: float | None = None, generator: torch.Generator,
                    callback: Callback | None = None, disable: bool | None = None) -> torch.Tensor:
    """Unadjusted Langevin, the paper's sampler: x ← clamp(x + h·∇log p + ω·z).

    ``noise_scale`` ω defaults to √(2h), which makes exp(−E) the stationary law (up to O(h) bias);
    the paper decouples it (e.g. h = 10, ω = 0.005). ``sigma`` is the fixed noise level passed to
    noise-conditional models; ``grad_clip`` clamps each score component."""
    noise = math.sqrt(2.0 * step_size) if noise_scale is None else float(noise_scale)
    sig = _full(x, sigma)
    hint = f"try a smaller step_size (now {step_size:g})"
    adjust = None if grad_clip is None else (lambda s, x: s.clamp(-grad_clip, grad_clip))
    for i in trange(steps, disable=disable, desc="langevin", leave=False):
        x = _step("langevin", target, x, sig, step_size, noise, clamp=clamp, adjust=adjust, generator=generator,
                  at=(i, steps, hint), callback=callback, sigma=sigma)
    return x


def _clipped_score(x: torch.Tensor, s: torch.Tensor, sigma: float) -> torch.Tensor:
    """The score whose Tweedie denoised estimate x + σ²·s is clipped to the data box [-1, 1]."""
    d = (x + sigma**2 * s).clamp(-1.0, 1.0)
    return (d - x) / sigma**2


def annealed_passes(sigmas: torch.Tensor, restarts: int = 0,
                    restart_sigma: float | None = None) -> list[tuple[int, int]]:
    """The (first, end) level ranges the annealed sampler sweeps: the whole schedule, then
    ``restarts`` times from the first level at or below ``restart_sigma`` to the end."""
    passes = [(0, len(sigmas))]
    if restarts:
        below = (sigmas <= float(restart_sigma) * (1 + 1e-6)).nonzero()
        if below.numel() == 0:
            raise SamplingError(f"annealed: restart_sigma {restart_sigma:g} is below every noise level "
                                f"(smallest {float(sigmas[-1]):g})")
        passes += [(int(below[0, 0]), len(sigmas))] * restarts
    return passes


def sample_annealed(target: Target, x: torch.Tensor, *, sigmas: torch.Tensor, steps_per_sigma: int,
                    step_size: float, noise_scale: float = 1.0, final_denoise: bool = True,
                    clamp: bool = False, restarts: int = 0, restart_sigma: float | None = None,
                    clip_denoised: bool = False, generator: torch.Generator, callback: Callback | None = None,
                    disable: bool | None = None) -> torch.Tensor:
    """Annealed Langevin over noise levels (Song & Ermon): at level σ_i the step is
    h_i = step_size · (σ_i/σ_min)², so ``step_size`` is the step at the smallest level.

    ``noise_scale`` multiplies the exact noise √(2h_i) (1 = exact). ``final_denoise`` ends with one
    Tweedie step x + σ_min²·∇log p_σmin(x), which removes the last level's noise.

    ``restarts`` > 0 (Restart sampling, Xu et al. 2023): after the sweep, add fresh Gaussian noise
    that lifts the chains from σ_min back to σ_j, the first level at or below ``restart_sigma``
    (variance σ_j² − σ_min²), and sweep the levels from σ_j down again; repeated ``restarts``
    times. Each pass gives the low-noise part of the composition another go at what the sweep
    left undone (late-acting factors, such as a model limited to small σ)."""
    sigma_min = float(sigmas[-1])
    passes = annealed_passes(sigmas, restarts, restart_sigma)
    total = sum(end - first for first, end in passes) * steps_per_sigma
    hint = f"try a smaller step_size (now {step_size:g}) or fewer noise levels"
    bar = trange(total, disable=disable, desc="annealed", leave=False)
    i = 0
    for k, (first, end) in enumerate(passes):
        if k > 0:
            lift = math.sqrt(max(float(sigmas[first]) ** 2 - sigma_min**2, 0.0))
            x = x + lift * _randn(x, generator)
        for level in range(first, end):
            sigma = float(sigmas[level])
            h = step_size * (sigma / sigma_min) ** 2
            sig = _full(x, sigma)
            noise = noise_scale * math.sqrt(2.0 * h)
            adjust = (lambda s, x, sigma=sigma: _clipped_score(x, s, sigma)) if clip_denoised else None
            for _ in range(steps_per_sigma):
                x = _step("annealed", target, x, sig, h, noise, clamp=clamp, adjust=adjust, generator=generator,
                          at=(i, total, hint), callback=callback, sigma=sigma)
                i += 1
                bar.update(1)
    bar.close()
    if final_denoise:
        s = target.score(x, _full(x, sigma_min)).detach()
        x = x + sigma_min**2 * s
        _check_finite("annealed", "values", x, total, total, "the final denoising step diverged")
    return x


def sample_mala(target: Target, x: torch.Tensor, *, steps: int, step_size: float, sigma: float | None = None,
                generator: torch.Generator, callback: Callback | None = None,
                disable: bool | None = None, stats: dict | None = None) -> torch.Tensor:
    """Metropolis-adjusted Langevin with a per-chain accept/reject test: exact for exp(−E) restricted
    to the data box [-1, 1] (proposals outside it are rejected, never clamped)."""
    h = float(step_size)
    sig = _full(x, sigma)
    hint = f"try a smaller step_size (now {step_size:g})"
    e, s = target.energy_and_score(x, sig)
    _check_finite("mala", "energy", e, 0, steps, hint)
    accepted = torch.zeros(x.shape[0], device=x.device)
    for i in trange(steps, disable=disable, desc="mala", leave=False):
        z = _randn(x, generator)
        y = x + h * s + math.sqrt(2.0 * h) * z
        ey, sy = target.energy_and_score(y, sig)
        # log q(x | y) − log q(y | x) for the Gaussian Langevin proposals.
        back = (x - y - h * sy).flatten(1).pow(2).sum(1) / (4.0 * h)
        fwd = z.flatten(1).pow(2).sum(1) / 2.0
        log_accept = (e - ey) - back + fwd
        inside = (y.abs() <= 1.0).flatten(1).all(1)
        u = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
        ok = inside & torch.isfinite(log_accept) & (torch.log(u) < log_accept)
        x = torch.where(ok.view(-1, 1, 1, 1), y, x)
        e = torch.where(ok, ey, e)
        s = torch.where(ok.view(-1, 1, 1, 1), sy, s)
        accepted += ok.to(accepted.dtype)
        _check_finite("mala", "values", x, i, steps, hint)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigma})
    if stats is not None:
        stats["acceptance"] = float(accepted.mean()) / max(steps, 1)
    return x


# -- probability-flow ODE solvers (noise-conditional models) ------------------------------------


def get_sigmas_karras(sigma_max: float, sigma_min: float, n: int, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022) schedule: ``n`` levels σ_i = (σ_max^{1/ρ} + i/(n−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ
    from σ_max down to σ_min, then a final 0 (the clean image): (n + 1,). ρ = 7 spends most levels
    at low noise, where the ODE's curvature is; ρ = 1 is linear spacing."""
    if n == 1:
        return torch.tensor([float(sigma_min), 0.0], dtype=torch.float64)
    ramp = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
    hi, lo = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    sigmas[0], sigmas[-1] = sigma_max, sigma_min  # exact end points despite the powers' rounding
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def _denoised(name: str, target: Target, x: torch.Tensor, sigma: float, clip: bool,
              at: tuple[int, int, str]) -> torch.Tensor:
    """D(x; σ) = x + σ²·∇log p_σ(x), the composition's estimate of the clean image (Tweedie), checked
    for NaN/inf; ``clip`` clamps it to the data box [-1, 1]."""
    s = target.score(x, _full(x, sigma)).detach()
    _check_finite(name, "score", s, *at)
    d = x + sigma**2 * s
    return d.clamp(-1.0, 1.0) if clip else d


def _churn(x: torch.Tensor, sigma: float, n_steps: int, s_churn: float, s_tmin: float, s_tmax: float | None,
           s_noise: float, generator: torch.Generator) -> tuple[torch.Tensor, float]:
    """EDM's stochastic churn: raise the noise level from σ to σ̂ = σ(1 + γ) by adding fresh noise of
    variance σ̂² − σ², γ = min(S_churn / N, √2 − 1) inside [S_tmin, S_tmax]. Returns (x̂, σ̂)."""
    gamma = 0.0
    if s_churn > 0 and sigma >= s_tmin and (s_tmax is None or sigma <= s_tmax):
        gamma = min(s_churn / n_steps, math.sqrt(2.0) - 1.0)
    if gamma == 0.0:
        return x, sigma
    sigma_hat = sigma * (1.0 + gamma)
    return x + s_noise * math.sqrt(sigma_hat**2 - sigma**2) * _randn(x, generator), sigma_hat


def _corrector_level(sigmas: torch.Tensor, corrector_steps: int, corrector_sigma: float | None) -> int | None:
    """Index of the level the Langevin corrector runs at: the first level at or below
    ``corrector_sigma`` that is above 0 (None when there is no corrector or no such level)."""
    if not corrector_steps or corrector_sigma is None:
        return None
    for i, s in enumerate(sigmas.tolist()):
        if 0 < s <= corrector_sigma * (1 + 1e-9):
            return i
    return None


def _correct(name: str, target: Target, x: torch.Tensor, sigma: float, k: int, step: float, noise: float,
             clip: bool, generator: torch.Generator, at: tuple[int, int, str]) -> torch.Tensor:
    """``k`` Langevin corrector steps at the fixed level σ (Song et al. 2021's predictor–corrector):
    x ← x + h·∇log p_σ(x) + noise·√(2h)·z with h = ``step``·σ², the score taken from the denoised
    estimate, (D(x; σ) − x)/σ². Each step is one score evaluation."""
    h = step * sigma**2
    for _ in range(k):
        d = _denoised(name, target, x, sigma, clip, at)
        x = x + h * (d - x) / sigma**2 + noise * math.sqrt(2.0 * h) * _randn(x, generator)
        _check_finite(name, "values", x, *at)
    return x


def sample_heun(target: Target, x: torch.Tensor, *, sigmas: torch.Tensor, s_churn: float = 0.0,
                s_tmin: float = 0.0, s_tmax: float | None = None, s_noise: float = 1.0,
                clip_denoised: bool = False, corrector_steps: int = 0, corrector_sigma: float | None = None,
                corrector_step: float = 0.3, corrector_noise: float = 1.0, generator: torch.Generator,
                callback: Callback | None = None, disable: bool | None = None) -> torch.Tensor:
    """EDM's sampler (Karras et al. 2022, Algorithm 2): Heun's second-order method on the
    probability-flow ODE dx/dσ = (x − D(x; σ))/σ over ``sigmas`` (ending in 0), the last step
    (to σ = 0) a plain Euler step, which is the Tweedie denoise D(x; σ_min). ``len(sigmas) − 1``
    steps make 2·(len(sigmas) − 1) − 1 score evaluations.

    ``s_churn`` > 0 makes it stochastic: before each step inside [``s_tmin``, ``s_tmax``] the chains
    are lifted to a slightly higher noise level with fresh noise (scaled by ``s_noise``), which
    corrects errors of earlier steps at the price of some added noise.

    ``corrector_steps`` k > 0 with ``corrector_sigma`` σ_c: once the chains reach the first level at
    or below σ_c, k Langevin steps at that level (step ``corrector_step``·σ², noise scaled by
    ``corrector_noise``; see :func:`_correct`), k more score evaluations."""
    n = len(sigmas) - 1
    hint = _ODE_HINT
    at_level = _corrector_level(sigmas, corrector_steps, corrector_sigma)
    for i in trange(n, disable=disable, desc="heun", leave=False):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        if i == at_level:
            x = _correct("heun", target, x, sigma, corrector_steps, corrector_step, corrector_noise, clip_denoised,
                         generator, (i, n, hint))
        x, sigma_hat = _churn(x, sigma, n, s_churn, s_tmin, s_tmax, s_noise, generator)
        d = (x - _denoised("heun", target, x, sigma_hat, clip_denoised, (i, n, hint))) / sigma_hat
        x_next = x + (sigma_next - sigma_hat) * d
        if sigma_next > 0:
            d2 = (x_next - _denoised("heun", target, x_next, sigma_next, clip_denoised, (i, n, hint))) / sigma_next
            x_next = x + (sigma_next - sigma_hat) * 0.5 * (d + d2)
        x = x_next
        _check_finite("heun", "values", x, i, n, hint)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigma_next})
    return x


def sample_dpmpp_2m(target: Target, x: torch.Tensor, *, sigmas: torch.Tensor, s_churn: float = 0.0,
                    s_tmin: float = 0.0, s_tmax: float | None = None, s_noise: float = 1.0,
                    clip_denoised: bool = False, corrector_steps: int = 0, corrector_sigma: float | None = None,
                    corrector_step: float = 0.3, corrector_noise: float = 1.0, eta: float = 0.0,
                    eta_sigma_min: float = 0.0, generator: torch.Generator, callback: Callback | None = None,
                    disable: bool | None = None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022): the exact solution of the ODE's linear part in
    λ = −log σ with the denoised estimate extrapolated linearly from the last two steps (second
    order, one score evaluation per step). The first step and the last (to σ = 0, which gives the
    denoised estimate itself) are first order.

    ``eta`` > 0 solves the reverse-time SDE instead (DPM-Solver++(2M) SDE, the midpoint form): a
    step from σ to σ' keeps the fraction e^{−(1+η)h} of the chains' distance from the denoised
    estimate (h = log σ − log σ') and adds fresh noise of standard deviation σ'·√(1 − e^{−2ηh}),
    so every level's marginal is kept while part of the accumulated error is replaced by noise.
    ``eta`` 0 is the ODE, 1 the reverse SDE of the forward process; a larger ``eta`` replaces more
    of the error a step, with the same marginals. ``eta_sigma_min`` > 0 keeps the noise to the
    steps that start at σ ≥ it and takes the ODE step below (as EDM's S_tmin does for churn).

    ``s_churn`` as in :func:`sample_heun`: the history then pairs each denoised estimate with the
    raised level it was made at, so the extrapolation stays consistent. ``corrector_steps`` as in
    :func:`sample_heun` (the extrapolation then pairs the corrected chains' estimate with the last
    one before the correction)."""
    name = "dpmpp_2m_sde" if eta else "dpmpp_2m"
    n = len(sigmas) - 1
    hint = _ODE_HINT
    at_level = _corrector_level(sigmas, corrector_steps, corrector_sigma)
    old_d, old_lam = None, 0.0
    for i in trange(n, disable=disable, desc=name, leave=False):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        if i == at_level:
            x = _correct(name, target, x, sigma, corrector_steps, corrector_step, corrector_noise,
                         clip_denoised, generator, (i, n, hint))
        x, sigma_hat = _churn(x, sigma, n, s_churn, s_tmin, s_tmax, s_noise, generator)
        eta_i = eta if sigma >= eta_sigma_min else 0.0
        d = _denoised(name, target, x, sigma_hat, clip_denoised, (i, n, hint))
        lam = -math.log(sigma_hat)
        if sigma_next == 0:
            x = d
        else:
            h = -math.log(sigma_next) - lam
            if old_d is not None:
                r = (lam - old_lam) / h
                d_est = (1.0 + 1.0 / (2.0 * r)) * d - (1.0 / (2.0 * r)) * old_d
            else:
                d_est = d
            # e^{−ηh}·σ'/σ̂ of the chains and 1 − e^{−(1+η)h} of the estimate (η = 0: the ODE step)
            x = (sigma_next / sigma_hat) * math.exp(-eta_i * h) * x - math.expm1(-(1.0 + eta_i) * h) * d_est
            if eta_i:
                x = x + s_noise * sigma_next * math.sqrt(-math.expm1(-2.0 * eta_i * h)) * _randn(x, generator)
        old_d, old_lam = d, lam
        _check_finite(name, "values", x, i, n, hint)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigma_next})
    return x


def sample_dpmpp_3m(target: Target, x: torch.Tensor, *, sigmas: torch.Tensor, s_churn: float = 0.0,
                    s_tmin: float = 0.0, s_tmax: float | None = None, s_noise: float = 1.0,
                    clip_denoised: bool = False, corrector_steps: int = 0, corrector_sigma: float | None = None,
                    corrector_step: float = 0.3, corrector_noise: float = 1.0, generator: torch.Generator,
                    callback: Callback | None = None, disable: bool | None = None) -> torch.Tensor:
    """DPM-Solver++(3M) (Lu et al. 2022, the third-order multistep solver in λ = −log σ): the
    denoised estimate extrapolated quadratically from the last three steps, one score evaluation
    per step. The first step is first order, the second second order (as in
    :func:`sample_dpmpp_2m`), and the last (to σ = 0) gives the denoised estimate itself.
    ``s_churn`` and ``corrector_steps`` as in :func:`sample_dpmpp_2m`."""
    n = len(sigmas) - 1
    hint = _ODE_HINT
    at_level = _corrector_level(sigmas, corrector_steps, corrector_sigma)
    hist: list[tuple[torch.Tensor, float]] = []  # (denoised, λ) of the last two evaluations, newest first
    for i in trange(n, disable=disable, desc="dpmpp_3m", leave=False):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        if i == at_level:
            x = _correct("dpmpp_3m", target, x, sigma, corrector_steps, corrector_step, corrector_noise,
                         clip_denoised, generator, (i, n, hint))
        x, sigma_hat = _churn(x, sigma, n, s_churn, s_tmin, s_tmax, s_noise, generator)
        d = _denoised("dpmpp_3m", target, x, sigma_hat, clip_denoised, (i, n, hint))
        lam = -math.log(sigma_hat)
        if sigma_next == 0:
            x = d
        else:
            h = -math.log(sigma_next) - lam
            phi_1 = -math.expm1(-h)  # 1 − e^{−h}
            phi_2 = 1.0 - phi_1 / h  # (e^{−h} − 1)/h + 1
            x = (sigma_next / sigma_hat) * x + phi_1 * d
            if len(hist) >= 1:
                r0 = (lam - hist[0][1]) / h
                d1_0 = (d - hist[0][0]) / r0
                if len(hist) == 2:
                    r1 = (hist[0][1] - hist[1][1]) / h
                    d1_1 = (hist[0][0] - hist[1][0]) / r1
                    d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                    d2 = (d1_0 - d1_1) / (r0 + r1)
                    phi_3 = phi_2 / h - 0.5
                    x = x + phi_2 * d1 - phi_3 * d2
                else:
                    x = x + phi_2 * d1_0
        hist = [(d, lam), *hist[:1]]
        _check_finite("dpmpp_3m", "values", x, i, n, hint)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigma_next})
    return x


def restart_sigmas(restart_sigma: float, sigma_min: float, restart_steps: int, rho: float) -> torch.Tensor:
    """The levels of one restart pass: ``restart_steps`` Karras levels from σ_r down to σ_min, then 0;
    one step is the single jump [σ_r, 0], the denoised estimate D(x; σ_r)."""
    if restart_steps == 1:
        return torch.tensor([float(restart_sigma), 0.0], dtype=torch.float64)
    return get_sigmas_karras(restart_sigma, sigma_min, restart_steps, rho)


def _with_restarts(solver: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``solver`` followed by Restart sampling (Xu et al. 2023): ``restarts`` times, lift the clean
    chains to σ_r with fresh Gaussian noise (variance σ_r², scaled by ``s_noise``) and solve back
    down over ``restart_sigmas`` (no churn, no corrector). The forward noise contracts the errors the
    solve accumulated; the short backward solves stay where the ODE is nearly linear."""
    def run(target: Target, x: torch.Tensor, *, restarts: int = 0, restart_sigmas: torch.Tensor | None = None,
            generator: torch.Generator, callback: Callback | None = None, disable: bool | None = None,
            **kw: Any) -> torch.Tensor:
        x = solver(target, x, generator=generator, callback=callback, disable=disable, **kw)
        lift = kw.get("s_noise", 1.0) * float(restart_sigmas[0]) if restarts else 0.0
        for _ in range(restarts):
            x = x + lift * _randn(x, generator)
            x = solver(target, x, sigmas=restart_sigmas, clip_denoised=kw.get("clip_denoised", False),
                       generator=generator, callback=callback, disable=True)
        return x
    run.__name__, run.__qualname__, run.__doc__ = solver.__name__, solver.__qualname__, solver.__doc__
    return run


# -- the registry: each sampler owns its defaults, validation and run arguments -------------------


def _positive(name: str, s: dict[str, Any], key: str, integer: bool = False) -> None:
    v = s.get(key)
    if v is None:
        return
    if integer:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise SamplingError(f"{name}: {key} must be a positive integer, got {v!r}")
        s[key] = int(v)
        return
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise SamplingError(f"{name}: {key} must be a number, got {v!r}") from None
    if not (math.isfinite(f) and f > 0):
        raise SamplingError(f"{name}: {key} must be a finite number > 0, got {v!r}")
    s[key] = f


def _non_negative(name: str, s: dict[str, Any], key: str) -> None:
    v = s.get(key)
    if v is None:
        return
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise SamplingError(f"{name}: {key} must be a number, got {v!r}") from None
    if not (math.isfinite(f) and f >= 0):
        raise SamplingError(f"{name}: {key} must be a finite number ≥ 0, got {v!r}")
    s[key] = f


def _flag(name: str, s: dict[str, Any], key: str) -> None:
    if not isinstance(s.get(key), (bool, np.bool_)):
        raise SamplingError(f"{name}: {key} must be true or false, got {s.get(key)!r}")
    s[key] = bool(s[key])


def _count(name: str, s: dict[str, Any], key: str) -> int:
    """``s[key]`` as an integer ≥ 0 (None: 0), normalised in place."""
    v = s.get(key) or 0
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
        raise SamplingError(f"{name}: {key} must be an integer ≥ 0, got {s.get(key)!r}")
    s[key] = int(v)
    return s[key]


def _validate_restarts(name: str, s: dict[str, Any]) -> None:
    """``restarts`` (an integer ≥ 0) and ``restart_sigma``, needed by restarts and inside
    (σ_min, σ_max]; after :func:`_sigma_range`."""
    r = _count(name, s, "restarts")
    if r and s.get("restart_sigma") is None:
        raise SamplingError(f"{name}: restarts={r} needs restart_sigma, the noise level the chains restart from")
    _positive(name, s, "restart_sigma")
    if r and not (s["sigma_min"] < s["restart_sigma"] <= s["sigma_max"]):
        raise SamplingError(f"{name}: restart_sigma ({s['restart_sigma']:g}) must lie in "
                            f"(sigma_min {s['sigma_min']:g}, sigma_max {s['sigma_max']:g}]")


def _sigma_range(name: str, s: dict[str, Any]) -> None:
    _positive(name, s, "sigma_max")
    _positive(name, s, "sigma_min")
    if s["sigma_min"] >= s["sigma_max"]:
        raise SamplingError(f"{name}: sigma_min ({s['sigma_min']:g}) must be below sigma_max ({s['sigma_max']:g})")


def _fixed_sigma(name: str, s: dict[str, Any], graph: Any) -> None:
    """Samplers without annealing run noise-conditional models at one level: the registry's smallest."""
    if s.get("sigma") is None and graph.all_noise_conditional:
        s["sigma"] = float(graph.sampler_settings.get("sigma_min", 0.01))
    if s.get("sigma") is None and any(m.kind != "explicit" for m in graph.models):
        raise SamplingError(f"{name}: implicit models need a noise level; pass sigma")


def _validate_langevin(s: dict[str, Any], graph: Any) -> None:
    for key, integer in (("steps", True), ("step_size", False), ("sigma", False), ("grad_clip", False)):
        _positive("langevin", s, key, integer)
    _non_negative("langevin", s, "noise_scale")
    _flag("langevin", s, "clamp")
    _fixed_sigma("langevin", s, graph)


def _prepare_langevin(s: dict[str, Any]) -> tuple[dict[str, Any], int]:
    kw = {k: s[k] for k in ("steps", "step_size", "noise_scale", "sigma", "grad_clip", "clamp")}
    return kw, s["steps"]


def _validate_mala(s: dict[str, Any], graph: Any) -> None:
    for key, integer in (("steps", True), ("step_size", False), ("sigma", False)):
        _positive("mala", s, key, integer)
    _fixed_sigma("mala", s, graph)


def _prepare_mala(s: dict[str, Any]) -> tuple[dict[str, Any], int]:
    return {k: s[k] for k in ("steps", "step_size", "sigma")}, s["steps"] + 1


def _validate_annealed(s: dict[str, Any], graph: Any) -> None:
    name = "annealed"
    for key, integer in (("steps", True), ("step_size", False), ("steps_per_sigma", True), ("n_sigmas", True)):
        _positive(name, s, key, integer)
    _non_negative(name, s, "noise_scale")
    if s.get("noise_scale") is None:
        s["noise_scale"] = 1.0
    _sigma_range(name, s)
    for key in ("clip_denoised", "final_denoise", "clamp"):
        _flag(name, s, key)
    _validate_restarts(name, s)


def _annealed_steps(s: dict[str, Any], user: dict[str, Any]) -> None:
    """An explicit step budget (--steps) wins over a registry's per-level count."""
    if user.get("steps_per_sigma") is None:
        s["steps_per_sigma"] = None


def _prepare_annealed(s: dict[str, Any]) -> tuple[dict[str, Any], int]:
    n_sigmas = s["n_sigmas"]
    per = s.get("steps_per_sigma")
    if per is None:
        if s["steps"] < n_sigmas:
            # Fewer steps than levels: keep the budget by using fewer levels (same end points).
            n_sigmas = s["n_sigmas"] = s["steps"]
        per = max(1, round(s["steps"] / n_sigmas))
    kw = {"sigmas": get_sigmas_geometric(s["sigma_max"], s["sigma_min"], n_sigmas), "steps_per_sigma": per,
          "step_size": s["step_size"], "noise_scale": s["noise_scale"], "final_denoise": s["final_denoise"],
          "clamp": s["clamp"], "restarts": s["restarts"], "restart_sigma": s["restart_sigma"],
          "clip_denoised": s["clip_denoised"]}
    levels = sum(end - first for first, end in annealed_passes(kw["sigmas"], s["restarts"], s["restart_sigma"]))
    s["total_steps"] = levels * per
    return kw, levels * per + int(s["final_denoise"])


def _validate_ode(name: str, own: tuple[str, ...] = ()) -> Callable[[dict[str, Any], Any], None]:
    """The solvers' checks; ``own`` names this solver's own settings, numbers ≥ 0."""
    def validate(s: dict[str, Any], graph: Any) -> None:
        _positive(name, s, "steps", integer=True)
        _sigma_range(name, s)
        _positive(name, s, "rho")
        for key in ("s_churn", "s_tmin", "s_noise", "corrector_noise"):
            _non_negative(name, s, key)
        for key in ("s_tmax", "corrector_sigma", "corrector_step"):
            _positive(name, s, key)
        _flag(name, s, "clip_denoised")
        _positive(name, s, "max_nfe", integer=True)
        k = _count(name, s, "corrector_steps")
        if k and s.get("corrector_sigma") is None:
            raise SamplingError(f"{name}: corrector_steps={k} needs corrector_sigma, the noise level the corrector "
                                "runs at")
        if k and not (s["sigma_min"] <= s["corrector_sigma"] <= s["sigma_max"]):
            raise SamplingError(f"{name}: corrector_sigma ({s['corrector_sigma']:g}) must lie in "
                                f"[sigma_min {s['sigma_min']:g}, sigma_max {s['sigma_max']:g}]")
        _positive(name, s, "restart_steps", integer=True)
        _validate_restarts(name, s)
        for key in own:
            _non_negative(name, s, key)
    return validate


def _ode_explicit_steps(s: dict[str, Any], user: dict[str, Any]) -> None:
    """An explicit step count (--steps) wins over a registry's evaluation budget."""
    if user.get("max_nfe") is None:
        s["max_nfe"] = None


def _budget_steps(evals_per_step: Callable[[int], int]) -> Callable[[dict[str, Any], int], int]:
    """``steps``, or fewer where their evaluations at ``rows`` network rows each (the corrector's and
    the restarts' included) would pass ``max_nfe``: the most that stay within it, and at least one."""
    def steps(s: dict[str, Any], rows: int) -> int:
        evals = s["max_nfe"] // max(rows, 1) - s["corrector_steps"] - s["restarts"] * evals_per_step(s["restart_steps"])
        n = 1
        while n < s["steps"] and evals_per_step(n + 1) <= evals:
            n += 1
        return n
    return steps


def _prepare_ode(evals: Callable[[int], int], own: tuple[str, ...] = ()
                 ) -> Callable[[dict[str, Any]], tuple[dict[str, Any], int]]:
    """The solvers' run arguments; ``own`` names settings of this solver alone (passed as they are)."""
    def prepare(s: dict[str, Any]) -> tuple[dict[str, Any], int]:
        sigmas = get_sigmas_karras(s["sigma_max"], s["sigma_min"], s["steps"], s["rho"])
        kw = {**{k: s[k] for k in own}, "sigmas": sigmas, "s_churn": s["s_churn"], "s_tmin": s["s_tmin"], "s_tmax": s["s_tmax"],
              "s_noise": s["s_noise"], "clip_denoised": s["clip_denoised"], "corrector_steps": s["corrector_steps"],
              "corrector_sigma": s["corrector_sigma"], "corrector_step": s["corrector_step"],
              "corrector_noise": s["corrector_noise"], "restarts": s["restarts"],
              "restart_sigmas": None if not s["restarts"] else restart_sigmas(s["restart_sigma"], s["sigma_min"],
                                                                                s["restart_steps"], s["rho"])}
        level = _corrector_level(sigmas, s["corrector_steps"], s["corrector_sigma"])
        return kw, (evals(s["steps"]) + (0 if level is None else s["corrector_steps"])
                    + s["restarts"] * evals(s["restart_steps"]))
    return prepare


@dataclass(frozen=True)
class SamplerSpec:
    """One sampler: its function, settings with defaults, and how it checks and runs them.

    ``validate(settings, graph)`` normalises the merged settings in place or raises
    :class:`SamplingError`; ``prepare(settings)`` gives the function's keyword arguments and the
    number of composed-score evaluations per chain it makes; ``start_sigma(settings)`` is the
    noise added to the uniform start (the first noise level, for annealing samplers);
    ``explicit_steps(settings, user)`` adjusts the settings when a step count is given explicitly;
    ``end_sigma(settings)`` is the noise level at which to score the final samples (the smallest level
    for annealing samplers; None for models without one); ``budget_steps(settings, rows)``, for
    samplers with a ``max_nfe`` setting, gives the step count that keeps a chain's network rows
    within that budget when one score evaluation costs ``rows`` rows (``steps`` where those fit).
    ``family`` groups samplers whose settings mean the same (the ODE solvers: a step count, churn,
    restarts and a budget tuned for one carry over to another); empty means the sampler's own name.
    ``eval_levels(settings, n)``, for samplers with a budget: the noise levels of the score
    evaluations n steps make without churn, one per evaluation (the budget counts each at its level).
    """

    name: str
    fn: Callable[..., torch.Tensor]
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    validate: Callable[[dict[str, Any], Any], None] = lambda s, graph: None
    prepare: Callable[[dict[str, Any]], tuple[dict[str, Any], int]] = lambda s: (dict(s), 0)
    start_sigma: Callable[[dict[str, Any]], float] = lambda s: 0.0
    explicit_steps: Callable[[dict[str, Any], dict[str, Any]], None] = lambda s, user: None
    end_sigma: Callable[[dict[str, Any]], float | None] = lambda s: s.get("sigma")
    budget_steps: Callable[[dict[str, Any], int], int] | None = None
    family: str = ""
    eval_levels: Callable[[dict[str, Any], int], list[float]] | None = None

    @property
    def settings_family(self) -> str:
        return self.family or self.name


_ODE_DEFAULTS = {"sigma_max": 10.0, "sigma_min": 0.01, "rho": 7.0, "s_churn": 0.0, "s_tmin": 0.0,
                 "s_tmax": None, "s_noise": 1.0, "clip_denoised": False, "max_nfe": None, "corrector_steps": 0,
                 "corrector_sigma": None, "corrector_step": 0.3, "corrector_noise": 1.0,
                 "restarts": 0, "restart_sigma": None, "restart_steps": 1}

def _levels(second: bool) -> Callable[[dict[str, Any], int], list[float]]:
    """The evaluation levels of n steps over the Karras schedule: one at each level but the final 0,
    and with ``second`` (Heun) one more at each step's end that is above 0."""
    def levels(s: dict[str, Any], n: int) -> list[float]:
        sig = get_sigmas_karras(s["sigma_max"], s["sigma_min"], n, s["rho"]).tolist()
        return sig[:-1] + (sig[1:-1] if second else [])
    return levels


def _solver(name: str, fn: Callable[..., torch.Tensor], steps: int, description: str,
            own: dict[str, Any] | None = None, second: bool = False) -> SamplerSpec:
    """A registry entry for one of the σ-schedule solvers (the "ode" family): ``steps`` by default,
    one score evaluation per step, or with ``second`` (Heun) a second one at each step's end above 0
    (2n − 1 for n steps); restarts after the solve; ``own`` holds settings of this solver alone with
    their defaults (numbers ≥ 0, passed to ``fn`` as they are)."""
    own = own or {}

    def evals(n: int) -> int:
        return 2 * n - 1 if second else n

    return SamplerSpec(
        name, _with_restarts(fn), {"steps": steps, **_ODE_DEFAULTS, **own}, description,
        validate=_validate_ode(name, tuple(own)), prepare=_prepare_ode(evals, own=tuple(own)),
        start_sigma=lambda s: s["sigma_max"], end_sigma=lambda s: s["sigma_min"],
        explicit_steps=_ode_explicit_steps, budget_steps=_budget_steps(evals), family="ode",
        eval_levels=_levels(second),
    )


SAMPLERS: dict[str, SamplerSpec] = {
    "langevin": SamplerSpec(
        "langevin", sample_langevin,
        {"steps": 200, "step_size": 0.01, "noise_scale": None, "sigma": None, "clamp": True, "grad_clip": None},
        "unadjusted Langevin (the paper's): fixed step on the score, Gaussian noise, clamp to [-1, 1]",
        validate=_validate_langevin, prepare=_prepare_langevin,
    ),
    "annealed": SamplerSpec(
        "annealed", sample_annealed,
        {"steps": 100, "step_size": 2e-5, "noise_scale": 1.0, "sigma_max": 1.0, "sigma_min": 0.01,
         "n_sigmas": 10, "steps_per_sigma": None, "final_denoise": True, "clamp": False,
         "restarts": 0, "restart_sigma": None, "clip_denoised": False},
        "annealed Langevin over a geometric σ schedule (noise-conditional models), optional final denoise",
        validate=_validate_annealed, prepare=_prepare_annealed, start_sigma=lambda s: s["sigma_max"],
        explicit_steps=_annealed_steps, end_sigma=lambda s: s["sigma_min"],
    ),
    "mala": SamplerSpec(
        "mala", sample_mala,
        {"steps": 200, "step_size": 1e-3, "sigma": None},
        "Metropolis-adjusted Langevin with a per-chain accept/reject test (explicit energies)",
        validate=_validate_mala, prepare=_prepare_mala,
    ),
    "heun": _solver(
        "heun", sample_heun, 10,
        "EDM's Heun (2nd-order) probability-flow ODE solver over a Karras σ schedule, optional churn "
        "(noise-conditional models); 2·steps − 1 score evaluations", second=True),
    "dpmpp_2m": _solver(
        "dpmpp_2m", sample_dpmpp_2m, 20,
        "DPM-Solver++(2M) (2nd-order multistep) probability-flow ODE solver over a Karras σ schedule, "
        "optional churn (noise-conditional models); one score evaluation per step"),
    "dpmpp_2m_sde": _solver(
        "dpmpp_2m_sde", sample_dpmpp_2m, 20,
        "DPM-Solver++(2M) SDE: the reverse-time SDE in the 2M solver's form over a Karras σ schedule, fresh "
        "noise every step (eta 1: the forward process's reverse; 0: the ODE), optional churn "
        "(noise-conditional models); one score evaluation per step",
        own={"eta": 1.0, "eta_sigma_min": 0.0}),
    "dpmpp_3m": _solver(
        "dpmpp_3m", sample_dpmpp_3m, 20,
        "DPM-Solver++(3M) (3rd-order multistep) probability-flow ODE solver over a Karras σ schedule, "
        "optional churn (noise-conditional models); one score evaluation per step"),
}


def get_sampler(name: str) -> SamplerSpec:
    try:
        return SAMPLERS[name]
    except KeyError:
        raise SamplingError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}") from None
