"""Langevin samplers, one plain function each, chosen by name from :data:`SAMPLERS`.

Each sampler is ``sample_x(target, x, *, generator, callback=None, disable=None, **settings)``
(the k-diffusion shape): ``target`` gives the score ∇ₓ log p (and, for MALA, the energy) of the
composition for the chains in ``x``; ``callback`` gets ``{"i", "x", "sigma"}`` after every step
(chain frames for GIFs use it); ``disable`` turns the tqdm progress bar off.

Every step checks for NaN/inf and raises :class:`SamplingError` naming the step, so a diverging
chain never leaves the sampler silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

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


@dataclass(frozen=True)
class SamplerSpec:
    """A sampler's function, its settings with defaults, and how long it runs."""

    name: str
    fn: Callable[..., torch.Tensor]
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""


SAMPLERS: dict[str, SamplerSpec] = {
    "langevin": SamplerSpec(
        "langevin", sample_langevin,
        {"steps": 200, "step_size": 0.01, "noise_scale": None, "sigma": None, "clamp": True, "grad_clip": None},
        "unadjusted Langevin (the paper's): fixed step on the score, Gaussian noise, clamp to [-1, 1]",
    ),
    "annealed": SamplerSpec(
        "annealed", sample_annealed,
        {"steps": 100, "step_size": 2e-5, "noise_scale": 1.0, "sigma_max": 1.0, "sigma_min": 0.01,
         "n_sigmas": 10, "steps_per_sigma": None, "final_denoise": True, "clamp": False,
         "restarts": 0, "restart_sigma": None, "clip_denoised": False},
        "annealed Langevin over a geometric σ schedule (noise-conditional models), optional final denoise",
    ),
    "mala": SamplerSpec(
        "mala", sample_mala,
        {"steps": 200, "step_size": 1e-3, "sigma": None},
        "Metropolis-adjusted Langevin with a per-chain accept/reject test (explicit energies)",
    ),
}


def get_sampler(name: str) -> SamplerSpec:
    try:
        return SAMPLERS[name]
    except KeyError:
        raise SamplingError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}") from None
