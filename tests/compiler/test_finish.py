"""The finishing model: below its level its unconditional score alone denoises every chain
(registry hook ``finisher``, manifest ``finish_below``), checked against closed forms."""

from __future__ import annotations

import math

import torch

from conceptlang.compiler import compile
from conceptlang.models.analytic import GAUSS_CONCEPTS, GAUSS_PRIOR, GaussianConceptModel, GaussianRegistry
from conceptlang.sampling import sample
from conceptlang.sampling.api import _ChainTarget

RED = GAUSS_CONCEPTS["color"]["red"]
LARGE = GAUSS_CONCEPTS["size"]["large"]


class FinishingRegistry(GaussianRegistry):
    """Per-family implicit Gaussians plus a finishing model (its own unconditional: the prior Gaussian)."""

    def __init__(self, below: float, **kw):
        super().__init__("implicit", joint=False, **kw)
        self.finish_model = GaussianConceptModel("gauss-finish", "implicit", ())
        self.below = below

    def finisher(self, domain):
        return self.finish_model, self.below


def _points(n: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return (torch.rand((n, 2, 1, 1), generator=g, dtype=torch.float64) * 2 - 1)


def _gauss_score(g, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The score of N(μ, s²) noised to σ: −(x − μ)/(s² + σ²)."""
    mean = torch.tensor(g.mean, dtype=x.dtype).view(1, 2, 1, 1)
    return -(x - mean) / (g.scale ** 2 + sigma.view(-1, 1, 1, 1) ** 2)


def _prior_score(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return _gauss_score(GAUSS_PRIOR, x, sigma)


def _product_score(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """red & large in the sum mode: the sum of the two concepts' scores."""
    return _gauss_score(RED, x, sigma) + _gauss_score(LARGE, x, sigma)


def test_score_is_the_finishing_models_below_its_level_and_the_composition_above():
    reg = FinishingRegistry(below=0.3)
    graph = compile("red & large", reg, and_mode="sum")
    x = _points()
    sigma = torch.tensor([0.05, 0.29, 0.3, 0.5, 1.0, 0.1], dtype=torch.float64)  # a batch on both sides
    got = graph.score(x, sigma)
    below = sigma < 0.3
    assert torch.allclose(got[below], _prior_score(x, sigma)[below], atol=1e-9, rtol=1e-6)
    assert torch.allclose(got[~below], _product_score(x, sigma)[~below], atol=1e-9, rtol=1e-6)
    # finish=False composes to the end, at every level
    plain = compile("red & large", reg, and_mode="sum", finish=False)
    assert plain.finish_model is None and plain.models == graph.models[:-1]
    assert torch.allclose(plain.score(x, sigma), _product_score(x, sigma), atol=1e-9, rtol=1e-6)


def test_a_batch_wholly_below_the_level_never_evaluates_the_composition():
    reg = FinishingRegistry(below=0.3)
    graph = compile("red & large", reg, and_mode="sum")
    leaf_models = [m for m in graph.models if m is not reg.finish_model]
    before = [m.forward_rows for m in leaf_models]
    x = _points(5)
    sigma = torch.full((5,), 0.1, dtype=torch.float64)
    assert torch.allclose(graph.score(x, sigma), _prior_score(x, sigma), atol=1e-9, rtol=1e-6)
    assert [m.forward_rows for m in leaf_models] == before and reg.finish_model.forward_rows == 5
    assert reg.finish_model in graph.models


def test_energy_and_score_below_the_level_are_the_finishing_models():
    reg = FinishingRegistry(below=0.3)
    graph = compile("red & large", reg, and_mode="sum")
    x = _points(4)
    sigma = torch.tensor([0.1, 0.2, 0.6, 0.9], dtype=torch.float64)
    energy, score = _ChainTarget(graph, None).energy_and_score(x, sigma)
    null = reg.finish_model.encode([{}]).expand(4, -1)
    own_energy = reg.finish_model.energy(x, null, sigma)
    composed_energy, composed_score = graph.energy_and_score(x, sigma)
    assert torch.equal(energy[:2], own_energy[:2].to(energy.dtype)) and torch.equal(energy[2:], composed_energy[2:])
    assert torch.allclose(score[:2], _prior_score(x, sigma)[:2], atol=1e-9, rtol=1e-6)
    assert torch.equal(score[2:], composed_score[2:])


def _last_level(gaussians, sig: float) -> tuple[tuple[float, float], float]:
    """The annealed sampler's law after its final Tweedie step from the last level σ of the sum of
    these Gaussians' scores: mean Σ μ_i/(s_i² + σ²) / P, variance (1 − σ²P)²/P, P = Σ 1/(s_i² + σ²)."""
    prec = sum(1.0 / (g.scale ** 2 + sig ** 2) for g in gaussians)
    mean = tuple(sum(g.mean[k] / (g.scale ** 2 + sig ** 2) for g in gaussians) / prec for k in range(2))
    return mean, (1 - sig ** 2 * prec) ** 2 / prec


def _check_law(images: torch.Tensor, mean, var: float) -> None:
    n = images.shape[0]
    x = images.reshape(n, 2).double()
    for k in range(2):
        assert abs(float(x[:, k].mean()) - mean[k]) < 5 * math.sqrt(var / n), (x.mean(0), mean)
        assert abs(float(x[:, k].var()) / var - 1) < 5 * math.sqrt(2 / n) + 0.01, (x.var(0), var)


SETTINGS = dict(sampler="annealed", steps=1000, n_sigmas=10, sigma_max=1.0, sigma_min=0.01, step_size=2e-5, device="cpu")


def test_sampling_below_a_level_above_every_noise_level_draws_the_finishing_models_distribution():
    # The finishing model speaks at every level: the chains are drawn from its own unconditional
    # N((0, 0), 0.35²), not from red & large, and the leaves' models are never evaluated.
    n = 4000
    reg = FinishingRegistry(below=10.0)
    graph = compile("red & large", reg, and_mode="sum")
    leaf_rows = [m.forward_rows for m in graph.models if m is not reg.finish_model]
    res = sample(graph, n, seed=4, **SETTINGS)
    assert [m.forward_rows for m in graph.models if m is not reg.finish_model] == leaf_rows
    _check_law(res.images, *_last_level([GAUSS_PRIOR], 0.01))
    # finish=False: the same chains are drawn from red & large's product
    plain = sample(compile("red & large", reg, and_mode="sum", finish=False), n, seed=4, **SETTINGS)
    _check_law(plain.images, *_last_level([RED, LARGE], 0.01))


def test_explain_names_the_finishing_model_and_its_level():
    graph = compile("red & large", FinishingRegistry(below=0.25), and_mode="sum")
    assert any("below σ = 0.25 the finishing model gauss-finish alone denoises every chain" in n for n in graph.notices)
    assert not any("finishing" in n for n in compile("red & large", GaussianRegistry("implicit", joint=False)).notices)


def test_no_noise_level_or_none_below_means_no_finish():
    graph = compile("red & large", FinishingRegistry(below=0.3), and_mode="sum")
    assert graph.finish_rows(None) is None
    assert graph.finish_rows(torch.tensor([0.3, 0.6])) is None
    assert graph.finish_rows(torch.tensor([0.3, 0.2])).tolist() == [False, True]


def test_rows_bound_covers_the_finishing_models_passes():
    from conceptlang.sampling.api import rows_bound

    reg = FinishingRegistry(below=0.3)
    graph = compile("red & large", reg, and_mode="sum")
    composed = rows_bound(compile("red & large", reg, and_mode="sum", finish=False))
    assert rows_bound(graph) == composed
    reg.finish_model.passes_per_row = composed + 3  # a finisher costing more rows than the composition
    assert rows_bound(graph) == composed + 3
