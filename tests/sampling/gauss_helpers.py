"""Exact references for the analytic Gaussian registry: quadrature of exp(−E) over the data box."""

from __future__ import annotations

import math

import torch

from conceptlang.compiler import EnergyGraph


def grid(m: int = 401) -> tuple[torch.Tensor, float]:
    """Points of [-1, 1]² as (m², 2, 1, 1) images, float64, and the cell area."""
    t = torch.linspace(-1.0, 1.0, m, dtype=torch.float64)
    xx, yy = torch.meshgrid(t, t, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1).view(-1, 2, 1, 1)
    return pts, (2.0 / (m - 1)) ** 2


def box_density(graph: EnergyGraph, m: int = 401) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised density of exp(−E) restricted to the box, on the grid: (points (P, 2), weights (P,))."""
    pts, _ = grid(m)
    e, _ = graph.energy(pts)
    logw = -e
    w = torch.exp(logw - logw.max())
    return pts.view(-1, 2), w / w.sum()


def box_moments(graph: EnergyGraph, m: int = 401) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (2,) and per-coordinate variance (2,) of exp(−E) on the box."""
    p, w = box_density(graph, m)
    mean = (w[:, None] * p).sum(0)
    var = (w[:, None] * (p - mean) ** 2).sum(0)
    return mean, var


def mean_tolerance(var: float, n: int, bias: float = 0.0, z: float = 5.0) -> float:
    return z * math.sqrt(var / n) + bias


def var_tolerance(n_values: int, bias: float = 0.0, z: float = 5.0) -> float:
    """Relative tolerance on a sample variance from n_values Gaussian draws."""
    return z * math.sqrt(2.0 / n_values) + bias
