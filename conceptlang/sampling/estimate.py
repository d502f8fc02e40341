"""Estimating each DNF disjunct's partition function Z_d = ∫ exp(−E_d) over the data box.

The DNF route draws disjunct d with probability ∝ Z_d · exp(−Σ log Z offsets); without estimates
every Z_d is taken as equal (the paper's assumption). With ``sample(..., log_z="estimate")`` the
shares become ∝ Ẑ_d, which makes the DNF route sample exactly the log-sum-exp energy's mixture.

Estimator: a pilot run of the sampler on each disjunct, a Gaussian proposal q fitted to it (its
spread widened 1.5×, so q covers the tails), and importance sampling,
log Ẑ_d = logmeanexp(−E_d(y) − log q(y)) over y ~ q, y outside the box counting as zero. Reliable
in low dimension (the analytic models); in image space the effective sample size collapses, and
the result reports it so that nobody trusts a useless estimate.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from conceptlang.compiler.graph import EnergyGraph
from conceptlang.errors import SamplingError

WIDEN = 1.5


def estimate_log_z(graph: EnergyGraph, pilot: torch.Tensor, coef_row: torch.Tensor, sigma: torch.Tensor | None,
                   generator: torch.Generator, draws: int) -> tuple[float, float]:
    """(log Ẑ, effective sample size) for one disjunct from its pilot samples (P, C, H, W)."""
    p = pilot.reshape(pilot.shape[0], -1).double()  # (P, D)
    mu = p.mean(0)
    sd = p.std(0).clamp_min(1e-3) * WIDEN
    d = p.shape[1]
    z = torch.randn((draws, d), generator=generator, device=pilot.device, dtype=torch.float64)
    y = mu + sd * z  # (M, D)
    log_q = -0.5 * z.pow(2).sum(1) - torch.log(sd).sum() - 0.5 * d * math.log(2 * math.pi)
    x = y.to(pilot.dtype).view(draws, *pilot.shape[1:])
    coefs = coef_row.expand(draws, -1)
    sig = None if sigma is None else sigma[:1].expand(draws)
    with torch.no_grad():
        e = graph.linear_energy(x, coefs, sig).double()  # (M,)
    inside = (y.abs() <= 1.0).all(1)
    logw = torch.where(inside, -e - log_q, torch.full_like(e, -math.inf))
    if not bool(torch.isfinite(logw).any()):
        raise SamplingError("log Z estimation failed: no proposal fell inside the data box with finite energy")
    log_z = float(torch.logsumexp(logw, 0)) - math.log(draws)
    w = torch.softmax(logw, 0)
    ess = float(1.0 / w.pow(2).sum())
    return log_z, ess


def shares_from(log_weights: list[float], log_z: list[float]) -> list[float]:
    vals = [a + b for a, b in zip(log_weights, log_z)]
    m = max(vals)
    w = [math.exp(v - m) for v in vals]
    s = sum(w)
    return [v / s for v in w]


def describe(log_z: list[float], ess: list[float], draws: int) -> dict[str, Any]:
    return {"log_z_estimates": log_z, "log_z_ess": ess, "log_z_draws": draws}
